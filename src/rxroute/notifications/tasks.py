"""The job that sends a prescription's patient emails in order, and retries them.

One *stream* per prescription: its job runs under the procrastinate lock
:func:`notification_lock`, so one job at a time works on it, and sends the oldest waiting
email first, so "dispensed" never arrives before "sent". Each attempt reads what it needs in
one short transaction (and skips the email if the patient opted out meanwhile, has no
address, or notifications were turned off), talks to the SMTP relay with no transaction
open, and records the outcome in another.

The relay, its login and the sender are Region A's
(:func:`rxroute.channels.email.smtp.send_configured`), and so is the retry policy (the email
channel's :class:`~rxroute.channels.base.RetryPolicy`): a temporary failure (4xx,
unreachable) sets the email's next attempt and defers the job for then, in the transaction
that records the failure, and stops the stream until then; a permanent one (5xx), or the
last attempt, marks the email failed and the stream goes on. Errors recorded and logged
carry the relay's stage and reply code, never an address or a name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import procrastinate
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import RetryPolicy
from rxroute.channels.email.errors import EmailRejected, EmailRetryable, EmailSendError
from rxroute.channels.email.smtp import send_configured
from rxroute.channels.registry import EMAIL, get_channel
from rxroute.jobs import defer_in_session, job_to_defer, queue
from rxroute.models import (
    Delivery,
    NotificationState,
    Patient,
    PatientNotification,
    Pharmacy,
    Prescription,
    PrescriptionStatusEvent,
)
from rxroute.notifications.kinds import Kind
from rxroute.notifications.links import unsubscribe_url
from rxroute.notifications.message import (
    NotificationContent,
    PharmacyLines,
    build_notification_email,
)
from rxroute.prescriptions.reference import patient_reference
from rxroute.runtime import Runtime, get_runtime
from rxroute.web.failure_text import FAILURE_HEADLINE, FAILURE_NEXT_STEP, failure_cause

log = structlog.get_logger(__name__)

#: ``skip_reason`` values (the service writes ``opted_out`` too).
OPTED_OUT = "opted_out"
NO_EMAIL = "no_email"
DISABLED = "disabled"


def notification_lock(prescription_id: uuid.UUID) -> str:
    """One job at a time per prescription, and its jobs start in the order deferred."""
    return f"notify:{prescription_id}"


@queue.task(
    name="send_patient_notifications",
    # Only for errors of our own (the database out of reach mid-run); the relay's failures
    # are recorded and rescheduled by the job itself, with the email channel's policy.
    retry=procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2),
)
async def send_patient_notifications(prescription_id: str) -> int:
    return await send_stream(get_runtime(), uuid.UUID(prescription_id))


async def defer_stream(
    session: AsyncSession, prescription_id: uuid.UUID, *, delay_seconds: float | None = None
) -> int:
    """The prescription's email job (now, or after ``delay_seconds``), in the session's
    transaction."""
    return await defer_in_session(
        session,
        send_patient_notifications,
        lock=notification_lock(prescription_id),
        delay_seconds=delay_seconds,
        prescription_id=str(prescription_id),
    )


def stream_job(prescription_id: uuid.UUID) -> dict[str, Any]:
    """The same job as :func:`defer_stream` (now), as a row to defer inside a SQL statement."""
    return job_to_defer(
        send_patient_notifications,
        lock=notification_lock(prescription_id),
        prescription_id=str(prescription_id),
    )


def retry_policy(runtime: Runtime) -> RetryPolicy:
    """Region A's: the same relay, so the same patience with it."""
    return get_channel(runtime, EMAIL).retry_policy(runtime.settings)


@dataclass(frozen=True)
class _Outgoing:
    notification_id: uuid.UUID
    kind: str
    message: EmailMessage
    attempt: int


@dataclass(frozen=True)
class _Waiting:
    """The oldest waiting email's next attempt is not due yet: the stream stops here."""


async def send_stream(runtime: Runtime, prescription_id: uuid.UUID) -> int:
    """Send the prescription's waiting emails, oldest first, until none is left or one
    must wait for its retry; returns how many were sent."""
    sent = 0
    while True:
        async with runtime.sessionmaker() as session, session.begin():
            found = await _next(runtime, session, prescription_id)
        if found is None or isinstance(found, _Waiting):
            return sent
        started = datetime.now(UTC)
        try:
            await send_configured(found.message, runtime.settings)
        except EmailSendError as exc:
            if await _record_failure(runtime, prescription_id, found, started, exc):
                return sent
            continue
        async with runtime.sessionmaker() as session, session.begin():
            row = await session.get_one(
                PatientNotification, found.notification_id, with_for_update=True
            )
            # Recorded as sent even if an opt-out came in meanwhile: it did go out.
            row.state = NotificationState.SENT.value
            row.attempts = found.attempt
            row.last_attempt_at = started
            row.next_attempt_at = None
            row.sent_at = datetime.now(UTC)
            row.message_id = str(found.message["Message-ID"])
        sent += 1
        log.info(
            "patient_notification_sent",
            notification_id=str(found.notification_id),
            kind=found.kind,
            attempt=found.attempt,
        )


async def _next(
    runtime: Runtime, session: AsyncSession, prescription_id: uuid.UUID
) -> _Outgoing | _Waiting | None:
    """The oldest waiting email, ready to send; skipped ones are recorded on the way."""
    while True:
        row = await session.scalar(
            select(PatientNotification)
            .where(
                PatientNotification.prescription_id == prescription_id,
                PatientNotification.state == NotificationState.PENDING.value,
            )
            .order_by(
                PatientNotification.status_event_seq.nulls_last(), PatientNotification.created_at
            )
            .limit(1)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if row is None:
            return None
        if row.next_attempt_at is not None and row.next_attempt_at > datetime.now(UTC):
            return _Waiting()
        settings = runtime.settings
        patient = await session.get_one(Patient, row.patient_id, populate_existing=True)
        skip = (
            DISABLED
            if not settings.patient_notifications
            else OPTED_OUT
            if patient.notifications_opt_out
            else NO_EMAIL
            if not patient.email.strip()
            else None
        )
        if skip is None:
            content = await _content(runtime, session, row, patient)
            try:
                message = build_notification_email(
                    sender=settings.smtp_from, to=patient.email, content=content
                )
            except ValueError as exc:
                # Our own configuration (RXROUTE_PUBLIC_URL): retrying would not help.
                row.state = NotificationState.FAILED.value
                row.last_error = str(exc)
                await session.flush()
                log.warning("patient_notification_not_composed", notification_id=str(row.id))
                continue
            return _Outgoing(row.id, row.kind, message, row.attempts + 1)
        row.state = NotificationState.SKIPPED.value
        row.skip_reason = skip
        await session.flush()
        log.info("patient_notification_skipped", notification_id=str(row.id), reason=skip)


async def _content(
    runtime: Runtime, session: AsyncSession, row: PatientNotification, patient: Patient
) -> NotificationContent:
    settings = runtime.settings
    kind = Kind(row.kind)
    prescription = await session.get_one(Prescription, row.prescription_id)
    fact = None
    if row.status_event_seq is not None:
        fact = await session.scalar(
            select(PrescriptionStatusEvent).where(
                PrescriptionStatusEvent.seq == row.status_event_seq
            )
        )
    pharmacy_id = prescription.pharmacy_id
    if row.delivery_id is not None:
        delivery = await session.get(Delivery, row.delivery_id)
        pharmacy_id = delivery.pharmacy_id if delivery is not None else pharmacy_id
    pharmacy = await session.get(Pharmacy, pharmacy_id) if pharmacy_id is not None else None
    base = settings.public_url.rstrip("/")
    return NotificationContent(
        kind=kind,
        first_name=patient.first_name,
        prescription_id=str(prescription.id),
        reference=patient_reference(prescription),
        prescription_url=f"{base}/prescriptions/{prescription.id}",
        unsubscribe_url=unsubscribe_url(settings, patient.id),
        pharmacy=(
            PharmacyLines(
                name=pharmacy.name,
                # The pharmacy's address, never the patient's.
                address_lines=tuple(
                    line
                    for line in (
                        pharmacy.address_line1,
                        pharmacy.address_line2,
                        pharmacy.town,
                        pharmacy.postcode,
                    )
                    if line
                ),
            )
            if pharmacy is not None
            else PharmacyLines(name="your pharmacy", address_lines=())
        ),
        headline=FAILURE_HEADLINE,
        cause=failure_cause(
            (fact.detail if fact is not None else None) or prescription.failure_reason
        ),
        next_step=FAILURE_NEXT_STEP,
        source=fact.source if fact is not None else "",
    )


async def _record_failure(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    found: _Outgoing,
    started: datetime,
    exc: EmailSendError,
) -> bool:
    """Record a failed attempt. True when the stream must wait: the next attempt is then
    set, and its job deferred, in the same transaction."""
    policy = retry_policy(runtime)
    attempt = found.attempt
    waiting = False
    delay = policy.delay(attempt)
    async with runtime.sessionmaker() as session, session.begin():
        row = await session.get_one(
            PatientNotification, found.notification_id, with_for_update=True
        )
        row.attempts = attempt
        row.last_attempt_at = started
        # The relay's stage and reply code (EmailSendError's message), never an address.
        row.last_error = str(exc)[:500]
        if row.state != NotificationState.PENDING.value:
            pass  # opted out while the relay was being asked
        elif (
            isinstance(exc, EmailRejected)
            or not isinstance(exc, EmailRetryable)
            or policy.exhausted(attempt)
        ):
            row.state = NotificationState.FAILED.value
            row.next_attempt_at = None
        else:
            waiting = True
            row.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
            await defer_stream(session, prescription_id, delay_seconds=delay)
        state = row.state
    log.warning(
        "patient_notification_not_sent",
        notification_id=str(found.notification_id),
        attempt=attempt,
        stage=exc.stage,
        smtp_code=exc.smtp_code,
        state=state,
        retry_in_seconds=delay if waiting else None,
    )
    return waiting
