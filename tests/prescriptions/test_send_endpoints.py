"""The prescription and pharmacy endpoints, with the real job queue and the real sandbox."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.jobs import queue
from rxroute.models import (
    Patient,
    Pharmacy,
    Prescriber,
    Prescription,
    PrescriptionStatusEvent,
    Role,
)
from rxroute.prescriptions.history import history
from rxroute.runtime import Runtime
from rxroute.seed.service import seed_demo
from tests.auth.helpers import bearer
from tests.erx_sandbox import Erx, send_until_done
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
)


async def _auth(runtime: Runtime, user_id: uuid.UUID, role: Role) -> dict[str, str]:
    return await bearer(runtime, user_id)


class World:
    """A patient with a draft prescription, another patient, staff, and pharmacies."""

    patient: Patient
    prescriber: Prescriber
    prescription: Prescription
    pharmacy_b: Pharmacy
    patient_headers: dict[str, str]
    other_headers: dict[str, str]
    support_headers: dict[str, str]


@pytest.fixture
async def world(erx: Erx, session: AsyncSession) -> World:
    w = World()
    runtime = erx.runtime
    w.patient = await make_patient(session)
    w.prescriber = await make_prescriber(session, runtime.secret_box)
    w.prescription = await make_prescription(session, w.patient, w.prescriber)
    w.pharmacy_b = await make_pharmacy(session, "B", platform_contact_id=5002)
    patient_user = await make_user(session, Role.PATIENT, patient=w.patient)
    other_patient = await make_patient(session)
    other_user = await make_user(session, Role.PATIENT, patient=other_patient)
    support = await make_user(session, Role.SUPPORT)
    await session.commit()
    w.patient_headers = await _auth(runtime, patient_user.id, Role.PATIENT)
    w.other_headers = await _auth(runtime, other_user.id, Role.PATIENT)
    w.support_headers = await _auth(runtime, support.id, Role.SUPPORT)
    return w


async def _jobs(runtime: Runtime, prescription_id: uuid.UUID) -> list[dict[str, Any]]:
    """The prescription's send jobs (its patient emails have jobs of their own)."""
    async with runtime.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT task_name, status, lock, args FROM procrastinate_jobs "
                "WHERE args->>'prescription_id' = :pid "
                "AND task_name <> 'send_patient_notifications'"
            ),
            {"pid": str(prescription_id)},
        )
        return [dict(row._mapping) for row in rows]


async def _nothing_recorded(runtime: Runtime, prescription_id: uuid.UUID) -> None:
    async with runtime.sessionmaker() as check:
        prescription = await check.get(Prescription, prescription_id)
        assert prescription is not None
        assert prescription.status == "draft"
        assert prescription.pharmacy_id is None
        assert prescription.channel is None
        events = await check.scalar(
            select(func.count())
            .select_from(PrescriptionStatusEvent)
            .where(PrescriptionStatusEvent.prescription_id == prescription_id)
        )
        assert events == 0
    assert await _jobs(runtime, prescription_id) == []


async def _drain_worker() -> None:
    await queue.run_worker_async(
        wait=False, concurrency=1, install_signal_handlers=False, listen_notify=False
    )


# --- send ----------------------------------------------------------------------------------------


async def test_send_queues_in_one_transaction_and_the_worker_issues_it(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    pid = world.prescription.id
    response = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "b", "pharmacy_id": str(world.pharmacy_b.id)},
        headers=world.patient_headers,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"/api/v1/prescriptions/{pid}"
    assert response.headers["Location"] == body["status_url"]
    jobs = await _jobs(erx.runtime, pid)
    assert [(j["task_name"], j["status"], j["lock"]) for j in jobs] == [
        ("send_prescription", "todo", f"prescription:{pid}")
    ]

    await _drain_worker()

    detail = await client.get(body["status_url"], headers=world.patient_headers)
    assert detail.status_code == 200
    shown = detail.json()
    assert shown["status"] == "issued"
    assert shown["region"] == "B" and shown["channel"] == "erx"
    assert shown["pharmacy"]["id"] == str(world.pharmacy_b.id)
    assert shown["provider_prescription_id"].startswith("SRX")
    assert [e["status"] for e in shown["history"]] == ["queued", "sending", "issued"]
    assert (await erx.stats())["issued_by_client_ref_id"] == {str(pid): 1}
    assert [j["status"] for j in await _jobs(erx.runtime, pid)] == ["succeeded"]

    again = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_b.id)},
        headers=world.patient_headers,
    )
    assert again.status_code == 409
    assert "issued" in again.json()["detail"]


async def test_second_send_while_queued_is_409_and_adds_nothing(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    pid = world.prescription.id
    request = {"region": "B", "pharmacy_id": str(world.pharmacy_b.id)}
    first = await client.post(
        f"/api/v1/prescriptions/{pid}/send", json=request, headers=world.patient_headers
    )
    assert first.status_code == 202
    second = await client.post(
        f"/api/v1/prescriptions/{pid}/send", json=request, headers=world.support_headers
    )
    assert second.status_code == 409
    assert "queued" in second.json()["detail"]
    assert len(await _jobs(erx.runtime, pid)) == 1
    async with erx.runtime.sessionmaker() as check:
        assert [e.status for e in await history(check, pid)] == ["queued"]


async def test_someone_elses_prescription_is_404(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    pid = world.prescription.id
    response = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_b.id)},
        headers=world.other_headers,
    )
    assert response.status_code == 404
    missing = await client.post(
        f"/api/v1/prescriptions/{uuid.uuid4()}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_b.id)},
        headers=world.patient_headers,
    )
    assert missing.status_code == 404
    assert response.json() == missing.json()
    seen = await client.get(f"/api/v1/prescriptions/{pid}", headers=world.other_headers)
    assert seen.status_code == 404
    await _nothing_recorded(erx.runtime, pid)


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("unknown_pharmacy", "pharmacy_id"),
        ("inactive_pharmacy", "pharmacy_id"),
        ("wrong_region_pharmacy", "pharmacy_id"),
        ("pharmacy_without_contact_id", "pharmacy_id"),
        ("missing_pharmacy", "pharmacy_id"),
        ("missing_region", "region"),
        ("blank_region", "region"),
        ("unserved_region", "region"),
    ],
)
async def test_bad_choices_are_422_naming_the_field_and_record_nothing(
    erx: Erx,
    world: World,
    session: AsyncSession,
    client: httpx.AsyncClient,
    case: str,
    field: str,
) -> None:
    pid = world.prescription.id
    body: dict[str, Any] = {"region": "B", "pharmacy_id": str(world.pharmacy_b.id)}
    if case == "unknown_pharmacy":
        body["pharmacy_id"] = str(uuid.uuid4())
    elif case == "inactive_pharmacy":
        closed = await make_pharmacy(session, "B", active=False)
        body["pharmacy_id"] = str(closed.id)
    elif case == "wrong_region_pharmacy":
        region_a = await make_pharmacy(session, "A")
        body["pharmacy_id"] = str(region_a.id)
    elif case == "pharmacy_without_contact_id":
        unregistered = await make_pharmacy(session, "B", platform_contact_id=None)
        body["pharmacy_id"] = str(unregistered.id)
    elif case == "missing_pharmacy":
        del body["pharmacy_id"]
    elif case == "missing_region":
        del body["region"]
    elif case == "blank_region":
        body["region"] = "  "
    else:
        body["region"] = "Z"
    await session.commit()

    response = await client.post(
        f"/api/v1/prescriptions/{pid}/send", json=body, headers=world.patient_headers
    )
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])
    await _nothing_recorded(erx.runtime, pid)


async def test_prescription_without_items_is_422_naming_items(
    erx: Erx, world: World, session: AsyncSession, client: httpx.AsyncClient
) -> None:
    empty = await make_prescription(session, world.patient, world.prescriber, items=0)
    await session.commit()
    response = await client.post(
        f"/api/v1/prescriptions/{empty.id}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_b.id)},
        headers=world.patient_headers,
    )
    assert response.status_code == 422
    assert "items" in response.json()["detail"]
    await _nothing_recorded(erx.runtime, empty.id)


async def test_list_shows_only_the_callers_own(
    erx: Erx, world: World, session: AsyncSession, client: httpx.AsyncClient
) -> None:
    other_patient = await make_patient(session)
    theirs = await make_prescription(session, other_patient, world.prescriber)
    second_mine = await make_prescription(session, world.patient, world.prescriber)
    await session.commit()

    mine = await client.get("/api/v1/prescriptions", headers=world.patient_headers)
    assert mine.status_code == 200
    ids = {row["id"] for row in mine.json()["results"]}
    assert ids == {str(world.prescription.id), str(second_mine.id)}
    assert str(theirs.id) not in ids

    everyone = await client.get("/api/v1/prescriptions", headers=world.support_headers)
    assert str(theirs.id) in {row["id"] for row in everyone.json()["results"]}


# --- pharmacy search ------------------------------------------------------------------------------


async def test_pharmacy_search_lists_active_region_pharmacies_best_first(
    db: Runtime, session: AsyncSession, client: httpx.AsyncClient
) -> None:
    await seed_demo(session, db.secret_box)
    closed = await make_pharmacy(session, "B", name="Leeds Closed Chemist", active=False)
    user = await make_user(session, Role.SUPPORT)
    await session.commit()
    headers = await _auth(db, user.id, Role.SUPPORT)

    response = await client.get(
        "/api/v1/pharmacies", params={"region": "B", "q": "leeds"}, headers=headers
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert results
    assert all(row["region"] == "B" for row in results)
    assert str(closed.id) not in {row["id"] for row in results}
    assert all("leeds" in f"{r['name']} {r['town']}".lower() for r in results)
    # Name or town prefix matches come before matches elsewhere.
    ranks = [
        0 if r["name"].lower().startswith("leeds") or r["town"].lower().startswith("leeds") else 1
        for r in results
    ]
    assert ranks == sorted(ranks)
    assert results[0]["full_address"] and results[0]["postcode"]

    region_a = await client.get(
        "/api/v1/pharmacies", params={"region": "A", "q": "leeds"}, headers=headers
    )
    assert all(row["region"] == "A" for row in region_a.json()["results"])


@pytest.mark.parametrize(
    "query",
    ["%", "_", "%_%", "'", '"', "' OR 1=1 --", "\\", "le%ds", "x" * 500, "💊 leeds", "\x00"],
)
async def test_pharmacy_search_answers_odd_input_safely(
    db: Runtime, session: AsyncSession, client: httpx.AsyncClient, query: str
) -> None:
    await make_pharmacy(session, "B", name="Wellbeing Leeds")
    user = await make_user(session, Role.PATIENT)
    await session.commit()
    response = await client.get(
        "/api/v1/pharmacies",
        params={"region": "B", "q": query},
        headers=await _auth(db, user.id, Role.PATIENT),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "%" not in body["query"] and "_" not in body["query"]
    if query in ("%", "_", "%_%"):
        # Wildcards are not wildcards: they match nothing in particular, so all are listed.
        assert len(body["results"]) == 1


async def test_pharmacy_search_refuses_unserved_region_and_overlong_query(
    db: Runtime, session: AsyncSession, client: httpx.AsyncClient
) -> None:
    user = await make_user(session, Role.PATIENT)
    await session.commit()
    headers = await _auth(db, user.id, Role.PATIENT)
    unserved = await client.get("/api/v1/pharmacies", params={"region": "Z"}, headers=headers)
    assert unserved.status_code == 422
    assert "region" in unserved.json()["detail"]
    long = await client.get(
        "/api/v1/pharmacies", params={"region": "B", "q": "x" * 501}, headers=headers
    )
    assert long.status_code == 422


# --- void ----------------------------------------------------------------------------------------


async def _issued(erx: Erx, world: World, client: httpx.AsyncClient) -> str:
    pid = world.prescription.id
    response = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_b.id)},
        headers=world.patient_headers,
    )
    assert response.status_code == 202
    outcomes = await send_until_done(erx.runtime, pid)
    assert outcomes[-1].result == "issued"
    async with erx.runtime.sessionmaker() as check:
        prescription = await check.get(Prescription, pid)
        assert prescription is not None and prescription.provider_prescription_id
        return prescription.provider_prescription_id


async def test_void_issued_prescription_voids_on_the_platform_and_in_history(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    provider_id = await _issued(erx, world, client)
    pid = world.prescription.id

    as_patient = await client.post(
        f"/api/v1/prescriptions/{pid}/void", headers=world.patient_headers
    )
    assert as_patient.status_code == 403

    response = await client.post(
        f"/api/v1/prescriptions/{pid}/void",
        headers=world.support_headers,
        json={"reason": "duplicate of another prescription"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "voided"
    remote = await erx.control("GET", f"/_sandbox/prescriptions/{provider_id}")
    assert remote["data"]["prescription"]["status"] == "voided"
    detail = await client.get(f"/api/v1/prescriptions/{pid}", headers=world.support_headers)
    events = detail.json()["history"]
    assert events[-1]["status"] == "voided"
    assert events[-1]["source"] == "support"
    assert events[-1]["provider_status"] == "voided"


async def test_void_dispensed_prescription_is_409_explaining_why(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    provider_id = await _issued(erx, world, client)
    pid = world.prescription.id
    # The pharmacy dispensed it on the platform; rxroute has not heard yet (no webhook).
    await erx.control("POST", f"/_sandbox/prescriptions/{provider_id}/dispense")

    response = await client.post(
        f"/api/v1/prescriptions/{pid}/void",
        headers=world.support_headers,
        json={"reason": "duplicate of another prescription"},
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "already dispensed" in detail
    assert provider_id in detail
    async with erx.runtime.sessionmaker() as check:
        statuses = [e.status for e in await history(check, pid)]
    assert "voided" not in statuses
    # What the platform said is now the truth here too.
    assert statuses[-1] == "dispensed"
    remote = await erx.control("GET", f"/_sandbox/prescriptions/{provider_id}")
    assert remote["data"]["prescription"]["status"] == "dispensed"
