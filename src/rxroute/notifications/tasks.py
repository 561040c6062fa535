"""The job that sends one patient email, and retries it when the relay is unwell.

Each attempt reads what it needs in one short transaction (and skips the email if the
patient opted out meanwhile, has no address, or notifications were turned off), talks to
the SMTP relay with no transaction open, and records the outcome in another. The relay,
its login and the sender are Region A's (:func:`rxroute.channels.email.smtp.send_configured`),
and so is the retry policy (the email channel's :class:`~rxroute.channels.base.RetryPolicy`):
a temporary failure (4xx, unreachable) schedules the next attempt with its backoff, in the
transaction that records the failure; a permanent one (5xx), or the last attempt, marks the
email failed. Errors recorded and logged carry the relay's stage and reply code, never an
address or a name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

import procrastinate
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import RetryPolicy
from rxroute.channels.email.errors import EmailRejected, EmailRetryable, EmailSendError
from rxroute.channels.email.smtp import send_configured
from rxroute.channels.registry import EMAIL, get_channel
from rxroute.jobs import defer_in_session, queue
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
from rxroute.runtime import Runtime, get_runtime
from rxroute.web.failure_text import FAILURE_HEADLINE, FAILURE_NEXT_STEP, failure_cause

log = structlog.get_logger(__name__)

#: ``skip_reason`` values (the service writes ``opted_out`` too).
OPTED_OUT = "opted_out"
NO_EMAIL = "no_email"
DISABLED = "disabled"


def notification_lock(notification_id: uuid.UUID) -> str:
    """One job at a time per email: a retry never overlaps the attempt that scheduled it."""
    return f"notify:{notification_id}"


@queue.task(
    name="send_patient_notification",
    # Only for errors of our own (the database out of reach mid-run); the relay's failures
    # are recorded and rescheduled by the job itself, with the email channel's policy.
    retry=procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2),
)
async def send_patient_notification(notification_id: str) -> str:
    return await send_notification(get_runtime(), uuid.UUID(notification_id))


async def defer_notification(session: AsyncSession, notification_id: uuid.UUID) -> int:
    """The email's job, now, in the session's transaction."""
    return await defer_in_session(
        session,
        send_patient_notification,
        lock=notification_lock(notification_id),
        notification_id=str(notification_id),
    )


def retry_policy(runtime: Runtime) -> RetryPolicy:
    """Region A's: the same relay, so the same patience with it."""
    return get_channel(runtime, EMAIL).retry_policy(runtime.settings)


@dataclass(frozen=True)
class _Outgoing:
    message: EmailMessage
    attempt: int


async def send_notification(runtime: Runtime, notification_id: uuid.UUID) -> str:
    """One attempt; returns the email's state afterwards (``sent``, ``pending`` when a retry
    is scheduled, ``failed``, ``skipped``), or ``missing``."""
    async with runtime.sessionmaker() as session, session.begin():
        found = await _prepare(runtime, session, notification_id)
    if not isinstance(found, _Outgoing):
        return found
    started = datetime.now(UTC)
    try:
        await send_configured(found.message, runtime.settings)
    except EmailSendError as exc:
        return await _record_failure(runtime, notification_id, found.attempt, started, exc)
    async with runtime.sessionmaker() as session, session.begin():
        row = await session.get_one(PatientNotification, notification_id, with_for_update=True)
        # Recorded as sent even if an opt-out came in meanwhile: it did go out.
        row.state = NotificationState.SENT.value
        row.attempts = found.attempt
        row.last_attempt_at = started
        row.sent_at = datetime.now(UTC)
        row.message_id = str(found.message["Message-ID"])
        row.last_error = None
    log.info(
        "patient_notification_sent",
        notification_id=str(notification_id),
        kind=row.kind,
        attempt=found.attempt,
    )
    return NotificationState.SENT.value


async def _prepare(
    runtime: Runtime, session: AsyncSession, notification_id: uuid.UUID
) -> _Outgoing | str:
    row = await session.get(
        PatientNotification, notification_id, with_for_update=True, populate_existing=True
    )
    if row is None:
        return "missing"
    if row.state != NotificationState.PENDING.value:
        return row.state
    settings = runtime.settings
    patient = await session.get_one(Patient, row.patient_id)
    skip = (
        DISABLED
        if not settings.patient_notifications
        else OPTED_OUT
        if patient.notifications_opt_out
        else NO_EMAIL
        if not patient.email.strip()
        else None
    )
    if skip is not None:
        row.state = NotificationState.SKIPPED.value
        row.skip_reason = skip
        log.info("patient_notification_skipped", notification_id=str(row.id), reason=skip)
        return row.state
    content = await _content(runtime, session, row, patient)
    message = build_notification_email(sender=settings.smtp_from, to=patient.email, content=content)
    return _Outgoing(message=message, attempt=row.attempts + 1)


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
    notification_id: uuid.UUID,
    attempt: int,
    started: datetime,
    exc: EmailSendError,
) -> str:
    """Record a failed attempt; schedule the next in the same transaction when one is due."""
    policy = retry_policy(runtime)
    retryable = isinstance(exc, EmailRetryable)
    async with runtime.sessionmaker() as session, session.begin():
        row = await session.get_one(PatientNotification, notification_id, with_for_update=True)
        row.attempts = attempt
        row.last_attempt_at = started
        # The relay's stage and reply code (EmailSendError's message), never an address.
        row.last_error = str(exc)[:500]
        if row.state != NotificationState.PENDING.value:
            state = row.state  # opted out while the relay was being asked
        elif isinstance(exc, EmailRejected) or not retryable or policy.exhausted(attempt):
            row.state = state = NotificationState.FAILED.value
        else:
            state = row.state
            await defer_in_session(
                session,
                send_patient_notification,
                lock=notification_lock(notification_id),
                delay_seconds=policy.delay(attempt),
                notification_id=str(notification_id),
            )
    log.warning(
        "patient_notification_not_sent",
        notification_id=str(notification_id),
        attempt=attempt,
        stage=exc.stage,
        smtp_code=exc.smtp_code,
        state=state,
        retry_in_seconds=policy.delay(attempt) if state == "pending" else None,
    )
    return state
