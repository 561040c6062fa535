"""Every path after a failed or finished send leaves at most one live copy, at the right place.

Driven through the API and the real send job against the real sandbox; the sandbox's aimed
faults stage exactly the ambiguous first send the case study is about (the issue lands, its
answer is lost), with warm tokens so the lost answer is the issue's own.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.erx.channel import prescriber_credentials
from rxroute.mailcatcher import MailCatcher
from rxroute.models import Delivery, Pharmacy, Prescription, Role
from rxroute.prescriptions.history import history
from rxroute.prescriptions.repository import load_for_sending
from rxroute.runtime import Runtime
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
    prescription_id: uuid.UUID
    pharmacy_x: Pharmacy
    pharmacy_y: Pharmacy
    pharmacy_a: Pharmacy
    patient: dict[str, str]
    support: dict[str, str]


@pytest.fixture
async def world(erx: Erx, session: AsyncSession) -> World:
    w = World()
    runtime = erx.runtime
    patient = await make_patient(session)
    prescriber = await make_prescriber(session, runtime.secret_box)
    prescription = await make_prescription(session, patient, prescriber)
    w.prescription_id = prescription.id
    w.pharmacy_x = await make_pharmacy(session, "B", platform_contact_id=5002)
    w.pharmacy_y = await make_pharmacy(session, "B", platform_contact_id=5003)
    w.pharmacy_a = await make_pharmacy(session, "A")
    patient_user = await make_user(session, Role.PATIENT, patient=patient)
    support = await make_user(session, Role.SUPPORT)
    await session.commit()
    w.patient = await _auth(runtime, patient_user.id, Role.PATIENT)
    w.support = await _auth(runtime, support.id, Role.SUPPORT)
    return w


async def _warm_tokens(erx: Erx, prescription_id: uuid.UUID) -> None:
    """Tokens in hand first, so an aimed fault hits the issue itself, not a login."""
    async with erx.runtime.sessionmaker() as s:
        loaded = await load_for_sending(s, prescription_id)
        credentials = prescriber_credentials(erx.runtime.secret_box, loaded)
    await erx.client.check_login(credentials)


async def _aim(erx: Erx, operation: str, fault: str, count: int = 1) -> None:
    await erx.control(
        "POST",
        "/_sandbox/faults/next",
        json={"operation": operation, "fault": fault, "count": count},
    )


async def _copies(erx: Erx, prescription_id: uuid.UUID) -> list[dict[str, Any]]:
    listing = await erx.control("GET", "/_sandbox/prescriptions")
    records: list[dict[str, Any]] = listing["prescriptions"]
    return [r for r in records if r.get("client_ref_id") == str(prescription_id)]


async def _deliveries(runtime: Runtime, prescription_id: uuid.UUID) -> list[Delivery]:
    async with runtime.sessionmaker() as s:
        return list(
            await s.scalars(
                select(Delivery)
                .where(Delivery.prescription_id == prescription_id)
                .order_by(Delivery.number)
            )
        )


async def _status(runtime: Runtime, prescription_id: uuid.UUID) -> str:
    async with runtime.sessionmaker() as s:
        prescription = await s.get(Prescription, prescription_id)
        assert prescription is not None
        return prescription.status


async def _fail_ambiguously(erx: Erx, world: World, client: httpx.AsyncClient) -> None:
    """Send to X; the issue lands but its answer is lost, and the series gives up."""
    erx.reconfigure(erx_send_max_attempts=1)
    pid = world.prescription_id
    sent = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_x.id)},
        headers=world.patient,
    )
    assert sent.status_code == 202, sent.text
    await _warm_tokens(erx, pid)
    await _aim(erx, "issue", "drop_after_processing")
    outcomes = await send_until_done(erx.runtime, pid)
    assert [o.result for o in outcomes] == ["failed"]
    assert await _status(erx.runtime, pid) == "failed"
    # The platform holds a live copy at X that rxroute never heard about.
    copies = await _copies(erx, pid)
    assert [(c["contact_id"], c["status"]) for c in copies] == [(5002, "issued")] or [
        (c["contact_id"], c["status"]) for c in copies
    ] == [(5002, "signed")]
    erx.reconfigure(erx_send_max_attempts=8)


async def test_resend_to_another_pharmacy_after_an_ambiguous_failure_voids_the_first(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    await _fail_ambiguously(erx, world, client)
    pid = world.prescription_id

    again = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_y.id)},
        headers=world.patient,
    )
    assert again.status_code == 202, again.text
    outcomes = await send_until_done(erx.runtime, pid)
    assert outcomes[-1].result == "issued"

    copies = await _copies(erx, pid)
    live = [c for c in copies if c["status"] not in ("voided", "expired", "dispensed")]
    assert [c["contact_id"] for c in live] == [5003], copies
    assert {c["contact_id"]: c["status"] for c in copies}[5002] == "voided"

    first, second = await _deliveries(erx.runtime, pid)
    assert (first.state, first.needs_withdrawal) == ("superseded", False)
    assert (second.state, second.pharmacy_id) == ("live", world.pharmacy_y.id)
    assert second.provider_ref == live[0]["id"]
    async with erx.runtime.sessionmaker() as s:
        events = await history(s, pid)
    voided = [e for e in events if e.status == "voided"]
    assert len(voided) == 1 and voided[0].delivery_id == first.id
    assert voided[0].provider_status == "voided"
    assert await _status(erx.runtime, pid) in ("issued", "signed")


async def test_reroute_of_a_live_prescription_to_region_a_leaves_nothing_on_the_platform(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    pid = world.prescription_id
    with MailCatcher("127.0.0.1", 0, 0) as catcher:
        erx.reconfigure(smtp_host="127.0.0.1", smtp_port=catcher.smtp_port)
        sent = await client.post(
            f"/api/v1/prescriptions/{pid}/send",
            json={"region": "B", "pharmacy_id": str(world.pharmacy_x.id)},
            headers=world.patient,
        )
        assert sent.status_code == 202
        assert (await send_until_done(erx.runtime, pid))[-1].result == "issued"

        moved = await client.post(
            f"/api/v1/prescriptions/{pid}/reroute",
            json={"region": "A", "pharmacy_id": str(world.pharmacy_a.id), "reason": "moved"},
            headers=world.patient,
        )
        assert moved.status_code == 202, moved.text
        assert moved.json()["status"] == "queued"
        assert (await send_until_done(erx.runtime, pid))[-1].result == "emailed"

        copies = await _copies(erx, pid)
        assert [c["status"] for c in copies] == ["voided"]
        emails = catcher.store.all()
        assert len(emails) == 1
        assert world.pharmacy_a.email in emails[0].envelope_to
    first, second = await _deliveries(erx.runtime, pid)
    assert first.state == "superseded" and not first.needs_withdrawal
    assert (second.state, second.channel) == ("live", "email")
    assert await _status(erx.runtime, pid) == "emailed"


async def test_void_of_a_failed_prescription_voids_the_copy_that_landed(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    await _fail_ambiguously(erx, world, client)
    pid = world.prescription_id

    voided = await client.post(
        f"/api/v1/prescriptions/{pid}/void",
        json={"reason": "patient no longer needs it"},
        headers=world.support,
    )
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    assert [c["status"] for c in await _copies(erx, pid)] == ["voided"]
    async with erx.runtime.sessionmaker() as s:
        events = await history(s, pid)
    last = events[-1]
    assert (last.status, last.source) == ("voided", "support")
    assert last.detail is not None and "patient no longer needs it" in last.detail


async def test_patient_cancel_while_the_platform_is_down_changes_nothing(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    pid = world.prescription_id
    sent = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_x.id)},
        headers=world.patient,
    )
    assert sent.status_code == 202
    assert (await send_until_done(erx.runtime, pid))[-1].result == "issued"
    await _aim(erx, "lookup", "error", count=5)

    refused = await client.post(
        f"/api/v1/prescriptions/{pid}/cancel", json={}, headers=world.patient
    )
    assert refused.status_code == 503, refused.text
    assert "nothing was changed" in refused.json()["detail"]
    assert await _status(erx.runtime, pid) in ("issued", "signed")
    (delivery,) = await _deliveries(erx.runtime, pid)
    assert delivery.state == "live" and not delivery.needs_withdrawal

    await erx.control("DELETE", "/_sandbox/faults/next")
    cancelled = await client.post(
        f"/api/v1/prescriptions/{pid}/cancel", json={}, headers=world.patient
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "voided"
    assert [c["status"] for c in await _copies(erx, pid)] == ["voided"]


async def test_reroute_rules(erx: Erx, world: World, client: httpx.AsyncClient) -> None:
    pid = world.prescription_id
    url = f"/api/v1/prescriptions/{pid}/reroute"
    body = {"region": "B", "pharmacy_id": str(world.pharmacy_y.id), "reason": "closer"}
    draft = await client.post(url, json=body, headers=world.patient)
    assert draft.status_code == 409 and "send it instead" in draft.json()["detail"]

    sent = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_x.id)},
        headers=world.patient,
    )
    assert sent.status_code == 202
    same = await client.post(
        url,
        json={"region": "B", "pharmacy_id": str(world.pharmacy_x.id)},
        headers=world.patient,
    )
    assert same.status_code == 409 and "already going" in same.json()["detail"]
    no_reason = await client.post(
        url, json={"region": "B", "pharmacy_id": str(world.pharmacy_y.id)}, headers=world.support
    )
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    wrong_region = await client.post(url, json={**body, "region": "A"}, headers=world.patient)
    assert wrong_region.status_code == 422 and "pharmacy_id" in wrong_region.json()["detail"]
    ok = await client.post(url, json=body, headers=world.patient)
    assert ok.status_code == 202, ok.text
    assert ok.headers["Location"] == f"/api/v1/prescriptions/{pid}"
    # The first delivery never reached the platform: nothing to withdraw, one issue at Y.
    assert (await send_until_done(erx.runtime, pid))[-1].result == "issued"
    copies = await _copies(erx, pid)
    assert [(c["contact_id"], c["status"]) for c in copies] in (
        [(5003, "issued")],
        [(5003, "signed")],
    )


async def test_a_withdrawal_left_without_a_job_is_requeued_by_reconciliation(
    erx: Erx, world: World, client: httpx.AsyncClient
) -> None:
    """A possibly live old copy is never forgotten: reconciliation re-queues its withdrawal."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text, update

    from rxroute.webhooks.tasks import requeue_orphaned_sends

    pid = world.prescription_id
    sent = await client.post(
        f"/api/v1/prescriptions/{pid}/send",
        json={"region": "B", "pharmacy_id": str(world.pharmacy_x.id)},
        headers=world.patient,
    )
    assert sent.status_code == 202
    assert (await send_until_done(erx.runtime, pid))[-1].result == "issued"
    async with erx.runtime.sessionmaker() as s, s.begin():
        await s.execute(
            update(Delivery).where(Delivery.prescription_id == pid).values(needs_withdrawal=True)
        )
        await s.execute(text("DELETE FROM procrastinate_jobs"))

    assert await requeue_orphaned_sends(datetime.now(UTC)) == 0  # not stale yet
    assert await requeue_orphaned_sends(datetime.now(UTC) + timedelta(minutes=10)) == 1
    async with erx.runtime.engine.connect() as connection:
        locks = (
            await connection.execute(
                text("SELECT lock FROM procrastinate_jobs WHERE status = 'todo'")
            )
        ).scalars()
        assert list(locks) == [f"prescription:{pid}"]
