"""Support's background jobs: resending a Region A prescription email.

The resend does not change the prescription's status (it stays ``emailed``): it sends the
same PDF with a fresh confirmation link and records a ``resend`` delivery attempt with the
outcome. Temporary SMTP failures are retried by the queue; a permanent refusal is recorded
and stops. A resend never overlaps a send of the same prescription (same queue lock).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import procrastinate
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.email.errors import EmailRejected, EmailRetryable
from rxroute.jobs import defer_in_session, queue
from rxroute.models import DeliveryAttempt, Prescription
from rxroute.prescriptions.email_sending import (
    NoRecipient,
    compose_prescription_email,
    deliver,
    email_attempt,
)
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.repository import load_for_sending
from rxroute.prescriptions.tasks import send_lock
from rxroute.runtime import Runtime, get_runtime

log = structlog.get_logger(__name__)

RESEND_MAX_ATTEMPTS = 5


@queue.task(
    name="resend_prescription_email",
    retry=procrastinate.RetryStrategy(
        max_attempts=RESEND_MAX_ATTEMPTS, exponential_wait=2, retry_exceptions={EmailRetryable}
    ),
)
async def resend_prescription_email(prescription_id: str, requested_by: str = "") -> str:
    return await resend_email(get_runtime(), uuid.UUID(prescription_id), requested_by)


async def resend_email(runtime: Runtime, prescription_id: uuid.UUID, requested_by: str) -> str:
    """One try. Returns the outcome; raises :class:`EmailRetryable` for the queue to retry."""
    async with runtime.sessionmaker() as session, session.begin():
        current = await session.get(Prescription, prescription_id)
        if current is None:
            return "missing"
        if current.status != Status.EMAILED.value or current.channel != "email":
            # Dispensed, voided or expired since support asked: nothing to resend.
            await _record(
                session,
                prescription_id,
                0,
                "skipped",
                datetime.now(UTC),
                f"not resent: the prescription is {current.status}",
            )
            return "skipped"
        attempt = 1 + (
            await session.scalar(
                select(func.count()).where(
                    DeliveryAttempt.prescription_id == prescription_id,
                    DeliveryAttempt.action == "resend",
                    DeliveryAttempt.attempt > 0,
                )
            )
            or 0
        )
        prescription = await load_for_sending(session, prescription_id)
        started = datetime.now(UTC)
        try:
            message = compose_prescription_email(runtime, prescription, started)
        except NoRecipient:
            message = None
    if message is None:
        await _finish(
            runtime, prescription_id, attempt, started, "rejected", "the pharmacy has no email"
        )
        return "rejected"
    try:
        await deliver(runtime.settings, message)
    except EmailRejected as exc:
        await _finish(
            runtime,
            prescription_id,
            attempt,
            started,
            "rejected",
            f"the mail server refused the email: {exc}",
        )
        return "rejected"
    except EmailRetryable as exc:
        await _finish(runtime, prescription_id, attempt, started, "retryable", str(exc))
        raise
    await _finish(runtime, prescription_id, attempt, started, "succeeded", None)
    log.info(
        "support_email_resent",
        prescription_id=str(prescription_id),
        actor=requested_by,
        attempt=attempt,
    )
    return "succeeded"


async def _record(
    session: AsyncSession,
    prescription_id: uuid.UUID,
    attempt: int,
    outcome: str,
    started: datetime,
    error: str | None,
) -> None:
    session.add(email_attempt(prescription_id, "resend", attempt, outcome, started, error))
    await session.flush()


async def _finish(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    attempt: int,
    started: datetime,
    outcome: str,
    error: str | None,
) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        await _record(session, prescription_id, attempt, outcome, started, error)
    log.info("support_resend_finished", prescription_id=str(prescription_id), outcome=outcome)


async def defer_resend(
    session: AsyncSession, prescription_id: uuid.UUID, *, requested_by: str
) -> int:
    return await defer_in_session(
        session,
        resend_prescription_email,
        lock=send_lock(prescription_id),
        prescription_id=str(prescription_id),
        requested_by=requested_by,
    )
