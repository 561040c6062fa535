"""API keys on the existing API: read and send prescriptions, search pharmacies, list
prescribers. A revoked key is 401 and a key lacking the scope 403 naming it, everywhere."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.scopes import Scope
from rxroute.apiclients.service import revoke_client
from rxroute.models import ApiClient, Patient, Pharmacy, Prescriber, Prescription, Role
from rxroute.prescriptions.history import history
from rxroute.runtime import Runtime
from tests import factories
from tests.apiclients.helpers import bearer, make_api_key
from tests.auth.helpers import bearer as user_bearer
from tests.staff_pages import csrf_for, sign_in


@dataclass
class World:
    patient: Patient
    mine: Prescription
    theirs: Prescription
    pharmacy: Pharmacy
    prescriber: Prescriber


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    """Two patients' drafts (one with the platform's own id), a pharmacy to send to."""
    prescriber = await factories.make_prescriber(
        session, db.secret_box, external_id="dr-ext-1", full_name="Dr Ada Example"
    )
    patient = await factories.make_patient(session)
    mine = await factories.make_prescription(session, patient, prescriber, external_id="rx-ext-1")
    theirs = await factories.make_prescription(
        session, await factories.make_patient(session), prescriber
    )
    pharmacy = await factories.make_pharmacy(session, "B", platform_contact_id=5002)
    await session.commit()
    return World(
        patient=patient, mine=mine, theirs=theirs, pharmacy=pharmacy, prescriber=prescriber
    )


def _send_body(world: World) -> dict[str, str]:
    return {"region": "B", "pharmacy_id": str(world.pharmacy.id)}


#: Every operation a key may call here, the scope it needs, and a request that passes
#: authentication (its answer is not the point of the scope checks).
def _operations(world: World) -> list[tuple[str, str, Scope, dict[str, str] | None]]:
    pid = world.mine.id
    return [
        ("GET", "/api/v1/prescriptions", Scope.PRESCRIPTIONS_READ, None),
        ("GET", f"/api/v1/prescriptions/{pid}", Scope.PRESCRIPTIONS_READ, None),
        ("POST", f"/api/v1/prescriptions/{pid}/send", Scope.PRESCRIPTIONS_SEND, _send_body(world)),
        (
            "POST",
            f"/api/v1/prescriptions/{pid}/reroute",
            Scope.PRESCRIPTIONS_SEND,
            _send_body(world),
        ),
        ("POST", f"/api/v1/prescriptions/{pid}/cancel", Scope.PRESCRIPTIONS_SEND, {}),
        ("GET", "/api/v1/pharmacies?region=B", Scope.PHARMACIES_READ, None),
        ("GET", "/api/v1/prescribers", Scope.PRESCRIBERS_READ, None),
    ]


async def _call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, str] | None,
    headers: dict[str, str],
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


async def test_a_key_lacking_the_scope_is_403_naming_it_and_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    for method, path, scope, body in _operations(world):
        others = [s for s in Scope if s is not scope]
        key = await make_api_key(session, *others)
        response = await _call(client, method, path, body, bearer(key))
        assert response.status_code == 403, f"{method} {path}: {response.text}"
        assert scope.value in response.json()["detail"], f"{method} {path}"
    async with session.begin():
        assert (await session.get(Prescription, world.mine.id, populate_existing=True)).status == (
            "draft"
        )


async def test_a_revoked_or_unknown_key_is_401_everywhere(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    key = await make_api_key(session, name="revoked platform")
    async with session.begin():
        await revoke_client(session, "revoked platform")
    for method, path, _, body in _operations(world):
        response = await _call(client, method, path, body, bearer(key))
        assert response.status_code == 401, f"{method} {path}: {response.text}"
        assert "revoked" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
        unknown = await _call(client, method, path, body, bearer("rxr_" + "x" * 43))
        assert unknown.status_code == 401, f"{method} {path}"
        assert unknown.json()["detail"] == "unknown API key"


async def test_a_read_key_sees_every_prescription_with_its_external_id(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    key = await make_api_key(session, Scope.PRESCRIPTIONS_READ, name="reader")
    listed = await client.get("/api/v1/prescriptions", headers=bearer(key))
    assert listed.status_code == 200, listed.text
    found = {row["id"]: row["external_id"] for row in listed.json()["results"]}
    assert found == {str(world.mine.id): "rx-ext-1", str(world.theirs.id): None}

    one = await client.get(f"/api/v1/prescriptions/{world.theirs.id}", headers=bearer(key))
    assert one.status_code == 200
    assert one.json()["external_id"] is None and one.json()["status"] == "draft"
    missing = await client.get(f"/api/v1/prescriptions/{uuid.uuid4()}", headers=bearer(key))
    assert missing.status_code == 404

    async with session.begin():
        client_row = await session.scalar(select(ApiClient).where(ApiClient.name == "reader"))
        assert client_row is not None and client_row.last_used_at is not None


async def test_a_patient_still_sees_only_their_own(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, world: World
) -> None:
    user = await factories.make_user(session, Role.PATIENT, patient=world.patient)
    await session.commit()
    headers = await user_bearer(db, user.id)
    listed = await client.get("/api/v1/prescriptions", headers=headers)
    assert [row["id"] for row in listed.json()["results"]] == [str(world.mine.id)]
    other = await client.get(f"/api/v1/prescriptions/{world.theirs.id}", headers=headers)
    assert other.status_code == 404


async def test_a_send_key_sends_reroutes_and_cancels_as_the_patient_would(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, world: World
) -> None:
    key = await make_api_key(session, Scope.PRESCRIPTIONS_SEND, name="Acme Health")
    pid = world.mine.id
    sent = await client.post(
        f"/api/v1/prescriptions/{pid}/send", json=_send_body(world), headers=bearer(key)
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "queued"
    assert sent.headers["location"] == f"/api/v1/prescriptions/{pid}"

    again = await client.post(
        f"/api/v1/prescriptions/{pid}/send", json=_send_body(world), headers=bearer(key)
    )
    assert again.status_code == 409, "the patient's rules: no second send while queued"

    same_place = await client.post(
        f"/api/v1/prescriptions/{pid}/reroute", json=_send_body(world), headers=bearer(key)
    )
    assert same_place.status_code == 409
    elsewhere = await factories.make_pharmacy(session, "B", platform_contact_id=5003)
    await session.commit()
    # No reason needed, as for the patient (support must give one).
    rerouted = await client.post(
        f"/api/v1/prescriptions/{pid}/reroute",
        json={"region": "B", "pharmacy_id": str(elsewhere.id)},
        headers=bearer(key),
    )
    assert rerouted.status_code == 202, rerouted.text

    cancelled = await client.post(
        f"/api/v1/prescriptions/{pid}/cancel", json={}, headers=bearer(key)
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "voided"

    async with db.sessionmaker() as check:
        events = await history(check, pid)
    assert [e.status for e in events] == ["queued", "queued", "voided"]
    assert {(e.source, e.actor) for e in events} == {("api", "api:Acme Health")}
    assert events[-1].detail == "cancelled through the API (api:Acme Health)"


async def test_a_send_key_answers_bad_choices_as_the_patient_is_answered(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    key = await make_api_key(session, Scope.PRESCRIPTIONS_SEND)
    response = await client.post(
        f"/api/v1/prescriptions/{world.mine.id}/send",
        json={"region": "B", "pharmacy_id": str(uuid.uuid4())},
        headers=bearer(key),
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["pharmacy_id"]


async def test_void_stays_support_only(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    key = await make_api_key(session)  # every scope
    response = await client.post(
        f"/api/v1/prescriptions/{world.mine.id}/void", json={}, headers=bearer(key)
    )
    assert response.status_code == 401


async def test_a_cookie_call_through_a_key_operation_still_needs_the_csrf_header(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    """Without a key, the operation falls back to the signed-in user, CSRF rule included."""
    user = await factories.make_user(session, Role.PATIENT, patient=world.patient)
    await session.commit()
    await sign_in(client, user)
    path = f"/api/v1/prescriptions/{world.mine.id}/send"
    refused = await client.post(path, json=_send_body(world))
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["detail"]
    token = await csrf_for(client, "/prescriptions")
    accepted = await client.post(path, json=_send_body(world), headers={"X-CSRF-Token": token})
    assert accepted.status_code == 202, accepted.text


async def test_pharmacies_for_a_key_and_for_any_signed_in_user(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, world: World
) -> None:
    key = await make_api_key(session, Scope.PHARMACIES_READ)
    by_key = await client.get("/api/v1/pharmacies", params={"region": "B"}, headers=bearer(key))
    assert by_key.status_code == 200, by_key.text
    assert [p["id"] for p in by_key.json()["results"]] == [str(world.pharmacy.id)]
    # Phone and opening hours are part of the answer: null while unknown.
    assert {"phone", "opening_hours"} <= set(by_key.json()["results"][0])
    user = await factories.make_user(session, Role.PATIENT, patient=world.patient)
    await session.commit()
    by_user = await client.get(
        "/api/v1/pharmacies", params={"region": "B"}, headers=await user_bearer(db, user.id)
    )
    assert by_user.status_code == 200
    assert by_user.json() == by_key.json()
    nobody = await client.get("/api/v1/pharmacies", params={"region": "B"})
    assert nobody.status_code == 401


async def test_prescribers_list_ids_and_external_ids_never_credentials(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, world: World
) -> None:
    inactive = await factories.make_prescriber(
        session, db.secret_box, full_name="Dr Zed Example", active=False
    )
    key = await make_api_key(session, Scope.PRESCRIBERS_READ)
    response = await client.get("/api/v1/prescribers", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "results": [
            {
                "id": str(world.prescriber.id),
                "external_id": "dr-ext-1",
                "full_name": "Dr Ada Example",
                "registration_number": world.prescriber.registration_number,
                "active": True,
            },
            {
                "id": str(inactive.id),
                "external_id": None,
                "full_name": "Dr Zed Example",
                "registration_number": inactive.registration_number,
                "active": False,
            },
        ]
    }
    assert "@example.com" not in response.text  # neither the email nor the platform login

    paged = await client.get("/api/v1/prescribers?limit=1&offset=1", headers=bearer(key))
    assert [p["id"] for p in paged.json()["results"]] == [str(inactive.id)]


@pytest.mark.parametrize(
    ("role", "allowed"), [(Role.SUPPORT, True), (Role.ADMIN, True), (Role.PATIENT, False)]
)
async def test_prescribers_for_staff_only_among_people(
    client: httpx.AsyncClient,
    session: AsyncSession,
    db: Runtime,
    world: World,
    role: Role,
    allowed: bool,
) -> None:
    patient = world.patient if role is Role.PATIENT else None
    user = await factories.make_user(session, role, patient=patient)
    await session.commit()
    response = await client.get("/api/v1/prescribers", headers=await user_bearer(db, user.id))
    if allowed:
        assert response.status_code == 200
        assert [p["id"] for p in response.json()["results"]] == [str(world.prescriber.id)]
    else:
        assert response.status_code == 403
        assert "prescribers:read" in response.json()["detail"]


async def test_a_request_does_not_wait_for_another_holding_the_clients_row(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, world: World
) -> None:
    """A long request (a cancel waiting for the platform) holds the row it stamped with
    last-used; another request with the same key must not queue behind it."""
    key = await make_api_key(session, Scope.PRESCRIPTIONS_READ, name="busy")
    async with db.sessionmaker() as holder, holder.begin():
        await holder.execute(
            update(ApiClient).where(ApiClient.name == "busy").values(last_used_at=None)
        )
        response = await asyncio.wait_for(
            client.get("/api/v1/prescriptions", headers=bearer(key)), timeout=10
        )
        assert response.status_code == 200, response.text
    async with session.begin():
        stamped = await session.scalar(
            select(ApiClient.last_used_at).where(ApiClient.name == "busy")
        )
    assert stamped is None, "the holder's write stands; the request left the stamp to it"
