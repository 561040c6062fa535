"""The console's landing section, "Needs attention": failed, stuck, expiring soon, dead letters.

Each prescription below is put in the state it is about (by the ledger where it matters,
by SQL for the clock); the list must name each problem once, in its own part, and leave
out the healthy ones that look like them (a fresh send, a recent issue, a dispensed one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import (
    InboundWebhookEvent,
    Prescription,
    PrescriptionStatusEvent,
    Role,
    User,
)
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from rxroute.support.attention import needs_attention
from tests import factories
from tests.staff_pages import sign_in


@dataclass
class World:
    support: User
    patient_user: User
    failed: Prescription
    stuck: Prescription
    sending_now: Prescription
    expiring: Prescription
    issued_recently: Prescription
    dispensed_long_ago: Prescription


async def _set(session: AsyncSession, prescription: Prescription, **columns: object) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    await session.execute(
        text(f"UPDATE prescriptions SET {assignments} WHERE id = :id"),  # noqa: S608 - names are ours
        {"id": prescription.id, **columns},
    )


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await factories.make_patient(session)
    patient_user = await factories.make_user(session, Role.PATIENT, patient=patient)
    support = await factories.make_user(session, Role.SUPPORT)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    pharmacy = await factories.make_pharmacy(session, "B", name="Wellbeing Leeds")

    async def sent() -> Prescription:
        prescription = await factories.make_prescription(
            session, patient, prescriber, region="B", channel="erx", pharmacy_id=pharmacy.id
        )
        await factories.queue_delivery(session, prescription.id, source=Source.PATIENT)
        return prescription

    failed = await sent()
    await _set(session, failed, status="failed", failure_reason="the platform refused")
    # Queued: the history's last line says when (set here, as the history is append-only).
    stuck = await factories.make_prescription(session, patient, prescriber)
    sending_now = await factories.make_prescription(session, patient, prescriber)
    for prescription, when in (
        (stuck, datetime.now(UTC) - timedelta(minutes=30)),
        (sending_now, datetime.now(UTC)),
    ):
        session.add(
            PrescriptionStatusEvent(
                prescription_id=prescription.id,
                status="queued",
                source="patient",
                occurred_at=when,
                recorded_at=when,
            )
        )
        await _set(session, prescription, status="queued")

    expiring = await sent()
    await factories.observe_current(session, expiring.id, Status.ISSUED, ref="SRXEXPIRING01")
    await _set(session, expiring, first_queued_at=datetime.now(UTC) - timedelta(days=26))
    issued_recently = await sent()
    await factories.observe_current(session, issued_recently.id, Status.ISSUED, ref="SRXRECENT001")
    dispensed = await sent()
    await factories.observe_current(session, dispensed.id, Status.ISSUED, ref="SRXDISPENSED1")
    await factories.observe_current(session, dispensed.id, Status.DISPENSED)
    await _set(session, dispensed, first_queued_at=datetime.now(UTC) - timedelta(days=40))

    session.add(
        InboundWebhookEvent(
            provider="signaturerx",
            provider_event_id="evt_dead_letter_1",
            event_type="prescription.status_changed",
            payload={"note": "never shown"},
            prescription_id=expiring.id,
            state="failed",
            error="processing raised ValueError",
            failed_at=datetime.now(UTC),
        )
    )
    await session.commit()
    return World(
        support, patient_user, failed, stuck, sending_now, expiring, issued_recently, dispensed
    )


def _part(page: str, part: str) -> str:
    start = page.index(f'id="attention-{part}"')
    return page[start : page.index("</section>", start)]


def _lists(part: str, prescription: Prescription) -> bool:
    return f'href="/support/prescriptions/{prescription.id}"' in part


async def test_the_console_opens_on_what_needs_attention(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.support)
    page = (await client.get("/support")).text
    assert 'id="needs-attention"' in page
    failed, stuck = _part(page, "failed"), _part(page, "stuck")
    expiring, webhooks = _part(page, "expiring"), _part(page, "webhooks")

    assert _lists(failed, world.failed) and "the platform refused" in failed
    assert _lists(stuck, world.stuck)
    assert not _lists(stuck, world.sending_now)  # queued a moment ago: not stuck
    assert _lists(expiring, world.expiring)
    assert not _lists(expiring, world.issued_recently)
    assert not _lists(expiring, world.dispensed_long_ago)  # collected: nothing to expire
    assert "Dead-lettered (failed processing): <strong>1</strong>" in webhooks
    assert "evt_dead_letter_1" in webhooks and _lists(webhooks, world.expiring)
    assert "never shown" not in page
    for other in (world.failed, world.stuck):
        assert not _lists(expiring, other)


async def test_expiry_is_counted_from_the_first_send_by_the_configured_validity(
    session: AsyncSession, db: Runtime, world: World
) -> None:
    found = await needs_attention(session, db.settings)
    [item] = found.expiring
    assert item.prescription.id == world.expiring.id
    first_sent = item.prescription.first_queued_at
    assert first_sent is not None
    assert item.expires_at == first_sent + timedelta(hours=db.settings.pharmacy_link_ttl_hours)
    shorter = db.settings.model_copy(update={"pharmacy_link_ttl_hours": 24 * 60})
    assert (await needs_attention(session, shorter)).expiring == []


async def test_a_patient_does_not_see_the_list(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.patient_user)
    response = await client.get("/support", headers={"accept": "text/html"})
    assert response.status_code == 403
    assert str(world.failed.id) not in response.text
