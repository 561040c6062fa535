"""Region A's worker path by itself: the one send job against rxroute's own mail catcher.

Every test runs :func:`rxroute.deliveries.sending.send` (the body of the ``send_prescription``
job, for every channel) with a recording retry scheduler instead of a delayed job, against a
real SMTP server on 127.0.0.1 that can refuse (550, 451) the next messages on demand. What
the pharmacy receives is read back from the catcher, and the confirmation link in it is
followed through the real pharmacy page.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.email.links import DispenseLink, read_dispense_token
from rxroute.config import Settings
from rxroute.deliveries import commands
from rxroute.deliveries.sending import SendOutcome, send
from rxroute.mailcatcher import MailCatcher
from rxroute.mailcatcher.store import StoredMessage
from rxroute.models import (
    Delivery,
    DeliveryAttempt,
    Pharmacy,
    Prescription,
    PrescriptionStatusEvent,
    Role,
    User,
)
from rxroute.prescriptions.history import history
from rxroute.prescriptions.reference import short_reference
from rxroute.runtime import Runtime
from rxroute.support import service
from rxroute.support.tasks import resend_email
from tests.channels.email.conftest import extract_pages
from tests.erx_sandbox import Erx, RecordingRetries
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
    queue_delivery,
)
from tests.mail import catcher as catcher  # a fixture
from tests.mail import sending_to

#: The email channel's retry policy in these tests (RXROUTE_ERX_SEND_* are its settings).
MAX_ATTEMPTS = 3
BASE_DELAY = 7.0
CAP_DELAY = 60.0


def _sending_to(
    runtime: Runtime, catcher: MailCatcher
) -> contextlib.AbstractContextManager[Settings]:
    """Email to the catcher, with a small retry policy."""
    return sending_to(
        runtime,
        catcher,
        erx_send_max_attempts=MAX_ATTEMPTS,
        erx_send_backoff_seconds=BASE_DELAY,
        erx_send_backoff_cap_seconds=CAP_DELAY,
        display_timezone="Europe/London",
    )


@pytest.fixture
def mail(db: Runtime, catcher: MailCatcher) -> Iterator[Runtime]:
    """The runtime, sending Region A email to the catcher."""
    with _sending_to(db, catcher):
        yield db


@pytest.fixture
def mail_and_erx(erx: Erx, catcher: MailCatcher) -> Iterator[Runtime]:
    """The runtime, sending email to the catcher and Region B to the sandbox."""
    with _sending_to(erx.runtime, catcher):
        yield erx.runtime


@dataclass
class World:
    prescription_id: uuid.UUID
    pharmacy: Pharmacy
    other_pharmacy: Pharmacy
    region_b_pharmacy: Pharmacy
    patient_user: User
    support: User


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    """A Region A prescription queued for its pharmacy, as the patient's send records it."""
    patient = await make_patient(session, region="A")
    patient_user = await make_user(session, Role.PATIENT, patient=patient)
    support = await make_user(session, Role.SUPPORT)
    prescriber = await make_prescriber(session, db.secret_box)
    pharmacy = await make_pharmacy(session, "A", name="Riverside Pharmacy")
    other = await make_pharmacy(session, "A", name="Hilltop Pharmacy")
    region_b = await make_pharmacy(session, "B", platform_contact_id=5001)
    prescription = await make_prescription(
        session, patient, prescriber, region="A", channel="email", pharmacy_id=pharmacy.id
    )
    await queue_delivery(session, prescription.id, actor=str(patient_user.id))
    await session.commit()
    return World(prescription.id, pharmacy, other, region_b, patient_user, support)


# --- helpers ---------------------------------------------------------------------------------


async def _send(
    runtime: Runtime, prescription_id: uuid.UUID, retries: RecordingRetries | None = None
) -> SendOutcome:
    return await send(runtime, prescription_id, schedule_retry=retries or RecordingRetries())


@dataclass
class State:
    prescription: Prescription
    deliveries: list[Delivery]
    statuses: list[str]
    events: list[PrescriptionStatusEvent]
    #: (action, outcome, series, attempt, delivery number) in the order they were recorded.
    attempts: list[tuple[str, str, int, int, int]]
    attempt_errors: list[str | None]


async def _state(runtime: Runtime, prescription_id: uuid.UUID) -> State:
    async with runtime.sessionmaker() as session:
        prescription = await session.get(Prescription, prescription_id)
        assert prescription is not None
        deliveries = list(
            await session.scalars(
                select(Delivery)
                .where(Delivery.prescription_id == prescription_id)
                .order_by(Delivery.number)
            )
        )
        numbers = {d.id: d.number for d in deliveries}
        events = await history(session, prescription_id)
        rows = list(
            await session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.prescription_id == prescription_id)
                .order_by(DeliveryAttempt.finished_at)
            )
        )
    return State(
        prescription=prescription,
        deliveries=deliveries,
        statuses=[e.status for e in events],
        events=events,
        attempts=[
            (
                a.action,
                a.outcome,
                a.series,
                a.attempt,
                numbers[a.delivery_id] if a.delivery_id else 0,
            )
            for a in rows
        ],
        attempt_errors=[a.error for a in rows],
    )


def _message_id(message: StoredMessage) -> str:
    return str(message_from_bytes(message.raw, policy=policy.default)["Message-ID"])


def _confirm_path(message: StoredMessage) -> str:
    """The confirmation link in the email's text, as a path on rxroute."""
    [url] = [word for word in (message.text_body or "").split() if "/pharmacy/confirm/" in word]
    return url[url.index("/pharmacy/confirm/") :]


def _bound_to(settings: Settings, path: str) -> DispenseLink:
    token = path.rsplit("/", 1)[1]
    return read_dispense_token(settings.link_secret.get_secret_value(), token, 3600)


def _pdf_text(message: StoredMessage) -> str:
    [attachment] = message.attachments
    assert attachment.content_type == "application/pdf"
    return " ".join(extract_pages(attachment.data))


async def _confirm(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """What the pharmacist does: open the link, press the button."""
    token = path.rsplit("/", 1)[1]
    return await client.post(path, data={"nonce": token})


NOT_LIVE = "cancelled or sent to another pharmacy"


async def _assert_link_refused(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert NOT_LIVE in page.text
    assert "Confirm dispensed</button>" not in page.text
    posted = await _confirm(client, path)
    assert posted.status_code == 409
    assert NOT_LIVE in posted.text


async def _send_jobs(runtime: Runtime, prescription_id: uuid.UUID) -> int:
    async with runtime.engine.connect() as connection:
        count = await connection.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'send_prescription' "
                "AND args->>'prescription_id' = :pid"
            ),
            {"pid": str(prescription_id)},
        )
    return int(count or 0)


async def _emailed(runtime: Runtime, world: World, catcher: MailCatcher) -> StoredMessage:
    """Send the world's prescription; the one email the pharmacy received."""
    outcome = await _send(runtime, world.prescription_id)
    assert outcome.result == "emailed", outcome
    [message] = catcher.messages()
    return message


# --- (a) the happy path ----------------------------------------------------------------------


async def test_emailed_with_the_message_id_as_reference_and_the_first_queued_date(
    mail: Runtime, world: World, catcher: MailCatcher, session: AsyncSession
) -> None:
    # Queued late on a summer evening: 30 June in UTC, already 1 July in London (BST).
    prescription = await session.get(Prescription, world.prescription_id)
    assert prescription is not None
    prescription.first_queued_at = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    await session.commit()

    retries = RecordingRetries()
    outcome = await _send(mail, world.prescription_id, retries)

    assert outcome.result == "emailed"
    assert retries.delays == []
    [message] = catcher.messages()
    assert message.envelope_to == (world.pharmacy.email,)
    assert message.subject == f"Private prescription {ref(world)}"
    state = await _state(mail, world.prescription_id)
    assert state.prescription.status == "emailed"
    assert state.statuses == ["queued", "sending", "emailed"]
    [delivery] = state.deliveries
    assert delivery.state == "live"
    assert delivery.provider_ref == _message_id(message) == outcome.detail
    assert delivery.delivered_at is not None
    assert (delivery.series, delivery.attempts_in_series) == (1, 1)
    assert {e.delivery_id for e in state.events} == {delivery.id}
    assert state.attempts == [("email", "succeeded", 1, 1, 1)]
    # The issue date is the day it was first queued, in the display zone.
    assert "Date of issue: 1 July 2026" in _pdf_text(message)
    assert "on 1 July 2026." in (message.text_body or "")
    # The link is bound to this delivery.
    link = _bound_to(mail.settings, _confirm_path(message))
    assert link == DispenseLink(str(world.prescription_id), str(delivery.id), link.nonce)
    assert link.nonce == delivery.link_nonce


# --- (b) a temporary refusal, then success ---------------------------------------------------


async def test_a_4xx_is_retried_with_the_policy_delay_then_emailed(
    mail: Runtime, world: World, catcher: MailCatcher
) -> None:
    catcher.faults.arm("refuse_temporary", 1)
    retries = RecordingRetries()

    first = await _send(mail, world.prescription_id, retries)
    assert first.result == "retry"
    assert "451 4.3.0" in first.detail
    assert retries.delays == [(world.prescription_id, BASE_DELAY)]
    assert first.retry_in_seconds == BASE_DELAY
    between = await _state(mail, world.prescription_id)
    assert between.prescription.status == "sending"
    assert between.deliveries[0].state == "pending"
    assert catcher.messages() == []

    second = await _send(mail, world.prescription_id, retries)
    assert second.result == "emailed"
    assert len(retries.delays) == 1  # no further retry
    [message] = catcher.messages()
    state = await _state(mail, world.prescription_id)
    assert state.prescription.status == "emailed"
    # One status line per real transition, though the job ran twice.
    assert state.statuses == ["queued", "sending", "emailed"]
    [delivery] = state.deliveries
    assert (delivery.state, delivery.series, delivery.attempts_in_series) == ("live", 1, 2)
    assert delivery.provider_ref == _message_id(message)
    assert state.attempts == [
        ("email", "retryable", 1, 1, 1),
        ("email", "succeeded", 1, 2, 1),
    ]
    assert catcher.faults.fired() == {"refuse_temporary": 1}


# --- (c) a permanent refusal -----------------------------------------------------------------


async def test_a_5xx_fails_at_once_with_the_servers_reason(
    mail: Runtime, world: World, catcher: MailCatcher
) -> None:
    catcher.faults.arm("refuse_permanent", 1)
    retries = RecordingRetries()

    outcome = await _send(mail, world.prescription_id, retries)

    assert outcome.result == "failed"
    assert retries.delays == []  # not worth retrying
    assert catcher.messages() == []
    state = await _state(mail, world.prescription_id)
    assert state.prescription.status == "failed"
    reason = state.prescription.failure_reason or ""
    assert "refused the email" in reason and "SMTP 550 5.2.1" in reason
    assert world.pharmacy.email and world.pharmacy.email not in reason  # never the address
    assert state.statuses == ["queued", "sending", "failed"]
    assert state.events[-1].detail == reason
    [delivery] = state.deliveries
    assert (delivery.state, delivery.attempts_in_series) == ("failed", 1)
    assert state.attempts == [("email", "rejected", 1, 1, 1)]
    # A failed send has no live copy, so running the job again sends nothing.
    assert (await _send(mail, world.prescription_id, retries)).result == "skipped"
    assert catcher.messages() == []


# --- (d) an exhausted series, then support's retry -------------------------------------------


async def test_support_retry_after_an_exhausted_series_starts_a_fresh_one(
    mail: Runtime, world: World, catcher: MailCatcher, session: AsyncSession
) -> None:
    catcher.faults.arm("refuse_temporary", MAX_ATTEMPTS)
    retries = RecordingRetries()
    outcomes = [await _send(mail, world.prescription_id, retries) for _ in range(MAX_ATTEMPTS)]
    assert [o.result for o in outcomes] == ["retry", "retry", "failed"]
    assert [delay for _, delay in retries.delays] == [BASE_DELAY, 2 * BASE_DELAY]
    exhausted = await _state(mail, world.prescription_id)
    assert exhausted.prescription.status == "failed"
    assert (exhausted.prescription.failure_reason or "").startswith(
        f"not sent after {MAX_ATTEMPTS} attempts; last error:"
    )
    # The last try is recorded for what it was (a temporary refusal), not as "rejected".
    assert [a[:4] for a in exhausted.attempts] == [
        ("email", "retryable", 1, 1),
        ("email", "retryable", 1, 2),
        ("email", "retryable", 1, 3),
    ]

    await service.retry_failed_send(session, world.support, world.prescription_id)
    await session.commit()
    assert await _send_jobs(mail, world.prescription_id) == 1  # the job the retry queued
    requeued = await _state(mail, world.prescription_id)
    assert requeued.prescription.status == "queued"
    assert requeued.prescription.failure_reason is None
    [delivery] = requeued.deliveries
    assert (delivery.state, delivery.series, delivery.attempts_in_series) == ("pending", 2, 0)

    outcome = await _send(mail, world.prescription_id, retries)
    assert outcome.result == "emailed"
    state = await _state(mail, world.prescription_id)
    assert state.prescription.status == "emailed"
    # Attempt 1 of series 2: the old series' count did not carry over.
    assert state.attempts[-1] == ("email", "succeeded", 2, 1, 1)
    assert (state.deliveries[0].series, state.deliveries[0].attempts_in_series) == (2, 1)
    assert state.statuses == [
        "queued",
        "sending",
        "failed",
        "queued",
        "sending",
        "emailed",
    ]
    queued_again = state.events[3]
    assert (queued_again.source, queued_again.actor) == ("support", str(world.support.id))
    assert len(catcher.messages()) == 1


# --- (e) support's resend --------------------------------------------------------------------


async def test_a_resend_is_visibly_a_copy_and_the_same_link_still_works(
    mail: Runtime,
    world: World,
    catcher: MailCatcher,
    session: AsyncSession,
    client: httpx.AsyncClient,
) -> None:
    original = await _emailed(mail, world, catcher)
    await service.request_email_resend(session, world.support, world.prescription_id)
    await session.commit()

    assert await resend_email(mail, world.prescription_id, str(world.support.id)) == "succeeded"

    first, copy = catcher.messages()
    assert first.subject == f"Private prescription {ref(world)}"
    assert copy.subject == f"COPY: Private prescription {ref(world)}"
    assert copy.envelope_to == (world.pharmacy.email,)
    notice = f"COPY - same prescription, reference {ref(world)}; do not dispense twice"
    assert notice in (copy.text_body or "")
    assert notice in _pdf_text(copy)
    assert "do not dispense twice" not in (first.text_body or "") + _pdf_text(first)
    # Same prescription, same reference, same issue date on both PDFs.
    for message in (first, copy):
        assert f"Prescription ID: {world.prescription_id}" in _pdf_text(message)
        # The short reference the patient's page shows, on the paper too.
        assert f"Reference: {ref(world)}" in _pdf_text(message)
    issued = [t.split("Date of issue: ", 1)[1][:20] for t in map(_pdf_text, (first, copy))]
    assert issued[0] == issued[1]

    state = await _state(mail, world.prescription_id)
    assert state.prescription.status == "emailed"  # a resend moves no status
    [delivery] = state.deliveries
    assert delivery.state == "live"
    assert delivery.provider_ref == _message_id(original)  # still the first email's
    assert state.attempts[-2:] == [
        ("resend", "requested", 1, 0, 1),
        ("resend", "succeeded", 1, 1, 1),
    ]
    note = state.events[-1]
    assert (note.status, note.delivery_id, note.actor) == (
        "emailed",
        None,
        str(world.support.id),
    )

    # Both links are bound to the one live delivery, and the original still confirms.
    original_path, copy_path = _confirm_path(first), _confirm_path(copy)
    assert _bound_to(mail.settings, copy_path) == _bound_to(mail.settings, original_path)
    confirmed = await _confirm(client, original_path)
    assert confirmed.status_code == 303
    again = await _confirm(client, copy_path)
    assert again.status_code == 200 and "This was already confirmed." in again.text
    done = await _state(mail, world.prescription_id)
    assert done.prescription.status == "dispensed"
    assert done.statuses.count("dispensed") == 1


# --- (f) re-route away from a Region A pharmacy ----------------------------------------------


async def test_reroute_to_another_region_a_pharmacy_cancels_the_first_email(
    mail: Runtime,
    world: World,
    catcher: MailCatcher,
    session: AsyncSession,
    client: httpx.AsyncClient,
) -> None:
    original = await _emailed(mail, world, catcher)
    old_link = _confirm_path(original)

    await commands.reroute(
        session,
        mail,
        world.support,
        world.prescription_id,
        region="A",
        pharmacy_id=world.other_pharmacy.id,
        reason="pharmacy closed for refurbishment",
    )
    await session.commit()

    # The old link stops working at once, before any email goes out.
    await _assert_link_refused(client, old_link)
    assert (await _state(mail, world.prescription_id)).prescription.status == "queued"

    outcome = await _send(mail, world.prescription_id)
    assert outcome.result == "emailed"
    first, cancellation, second = catcher.messages()
    # The old pharmacy is told first, with the same reference.
    assert cancellation.envelope_to == (world.pharmacy.email,)
    assert cancellation.subject == (
        f"CANCELLED - do not dispense: Private prescription {ref(world)}"
    )
    assert f"Private prescription {ref(world)} has been cancelled - do not dispense it." in (
        cancellation.text_body or ""
    )
    assert "pharmacy closed for refurbishment" in (cancellation.text_body or "")
    assert cancellation.attachments == ()
    # Then the new pharmacy gets the prescription (not a copy), dated as the first one was.
    assert second.envelope_to == (world.other_pharmacy.email,)
    assert second.subject == f"Private prescription {ref(world)}"
    issued = [t.split("Date of issue: ", 1)[1][:20] for t in map(_pdf_text, (first, second))]
    assert issued[0] == issued[1]

    state = await _state(mail, world.prescription_id)
    old, new = state.deliveries
    assert (old.state, old.needs_withdrawal, old.pharmacy_id) == (
        "superseded",
        False,
        world.pharmacy.id,
    )
    assert (new.state, new.pharmacy_id) == ("live", world.other_pharmacy.id)
    assert state.prescription.current_delivery_id == new.id
    assert state.prescription.status == "emailed"
    # Delivery 1 was withdrawn (the cancellation email) before delivery 2 was sent.
    assert [(a[0], a[1], a[4]) for a in state.attempts[-2:]] == [
        ("withdraw", "succeeded", 1),
        ("email", "succeeded", 2),
    ]
    # The old delivery's withdrawal is in its own history; it did not move the status.
    assert ("voided", old.id) in [(e.status, e.delivery_id) for e in state.events]

    # The old link is still refused, and changed nothing; the new one works.
    await _assert_link_refused(client, old_link)
    assert (await _state(mail, world.prescription_id)).prescription.status == "emailed"
    assert _bound_to(mail.settings, _confirm_path(second)).delivery_id == str(new.id)
    assert (await _confirm(client, _confirm_path(second))).status_code == 303
    assert (await _state(mail, world.prescription_id)).prescription.status == "dispensed"


async def test_reroute_to_region_b_cancels_the_email_and_issues_on_the_platform(
    mail_and_erx: Runtime,
    erx: Erx,
    world: World,
    catcher: MailCatcher,
    session: AsyncSession,
    client: httpx.AsyncClient,
) -> None:
    runtime = mail_and_erx
    original = await _emailed(runtime, world, catcher)
    old_link = _confirm_path(original)

    await commands.reroute(
        session,
        runtime,
        world.support,
        world.prescription_id,
        region="B",
        pharmacy_id=world.region_b_pharmacy.id,
        reason="patient moved to region B",
    )
    await session.commit()
    await _assert_link_refused(client, old_link)

    outcome = await _send(runtime, world.prescription_id)

    assert outcome.result == "issued"
    first, cancellation = catcher.messages()
    assert first.id == original.id
    assert cancellation.envelope_to == (world.pharmacy.email,)
    assert cancellation.subject.startswith("CANCELLED - do not dispense")
    assert ref(world) in cancellation.subject
    stats = await erx.stats()
    assert stats["issued_by_client_ref_id"] == {str(world.prescription_id): 1}
    state = await _state(runtime, world.prescription_id)
    old, new = state.deliveries
    assert (old.channel, old.state, old.needs_withdrawal) == ("email", "superseded", False)
    assert (new.channel, new.state) == ("erx", "live")
    assert state.prescription.status == "issued"
    assert state.prescription.provider_prescription_id == new.provider_ref
    # The first pharmacy's link cannot mark the live e-prescription dispensed.
    await _assert_link_refused(client, old_link)
    after = await _state(runtime, world.prescription_id)
    assert after.prescription.status == "issued"
    assert "dispensed" not in after.statuses


# --- (g) the patient cancels -----------------------------------------------------------------


async def test_patient_cancel_voids_at_once_and_the_job_emails_the_cancellation(
    mail: Runtime,
    world: World,
    catcher: MailCatcher,
    client: httpx.AsyncClient,
) -> None:
    original = await _emailed(mail, world, catcher)
    link = _confirm_path(original)

    cancelled = await commands.cancel(mail, world.patient_user, world.prescription_id, reason=None)

    # At once: cancelled, the link refused, and the job that tells the pharmacy queued.
    assert cancelled.status == "voided"
    state = await _state(mail, world.prescription_id)
    assert state.prescription.status == "voided"
    assert state.events[-1].source == "patient"
    assert state.events[-1].actor == str(world.patient_user.id)
    [delivery] = state.deliveries
    assert (delivery.state, delivery.needs_withdrawal) == ("withdrawn", True)
    await _assert_link_refused(client, link)
    assert await _send_jobs(mail, world.prescription_id) == 1
    assert len(catcher.messages()) == 1  # the pharmacy has not been told yet

    outcome = await _send(mail, world.prescription_id)

    assert outcome.result == "skipped"  # nothing new to send
    first, cancellation = catcher.messages()
    assert first.id == original.id
    assert cancellation.envelope_to == (world.pharmacy.email,)
    assert cancellation.subject == (
        f"CANCELLED - do not dispense: Private prescription {ref(world)}"
    )
    assert "cancelled by the patient" in (cancellation.text_body or "")
    done = await _state(mail, world.prescription_id)
    assert done.prescription.status == "voided"
    assert done.statuses.count("voided") == 1  # one real transition, one line
    assert done.deliveries[0].needs_withdrawal is False
    assert [a[:2] for a in done.attempts if a[0] == "withdraw"] == [("withdraw", "succeeded")]

    # Running the job again tells the pharmacy nothing twice; the link stays refused.
    assert (await _send(mail, world.prescription_id)).result == "skipped"
    assert len(catcher.messages()) == 2
    await _assert_link_refused(client, link)
    assert (await _state(mail, world.prescription_id)).prescription.status == "voided"


def ref(world: World) -> str:
    """The short reference the pharmacy's emails quote."""
    return short_reference(world.prescription_id)
