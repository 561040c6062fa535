"""Support's background jobs: resending a Region A prescription email, visibly as a copy.

The resend does not change the prescription's status (it stays ``emailed``): it sends the
live delivery again through its channel, marked "COPY - same prescription, reference ...;
do not dispense twice", with the same confirmation link (still bound to that delivery), and
records a ``resend`` delivery attempt with the outcome. Temporary failures are retried by
the queue; a permanent refusal is recorded and stops. A resend never overlaps a send of the
same prescription (same queue lock).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import procrastinate
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import DeliveryRejected, DeliveryRetryable, NotSendable, Purpose
from rxroute.channels.registry import get_channel
from rxroute.deliveries import ledger
from rxroute.jobs import defer_in_session, queue
from rxroute.models import DeliveryAttempt, Prescription
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.repository import load_for_sending
from rxroute.prescriptions.tasks import send_lock
from rxroute.runtime import Runtime, get_runtime

log = structlog.get_logger(__name__)

RESEND_MAX_ATTEMPTS = 5


@queue.task(
    name="resend_prescription_email",
    retry=procrastinate.RetryStrategy(
        max_attempts=RESEND_MAX_ATTEMPTS, exponential_wait=2, retry_exceptions={DeliveryRetryable}
    ),
)
async def resend_prescription_email(prescription_id: str, requested_by: str = "") -> str:
    return await resend_email(get_runtime(), uuid.UUID(prescription_id), requested_by)


async def resend_email(runtime: Runtime, prescription_id: uuid.UUID, requested_by: str) -> str:
    """One try. Returns the outcome; raises :class:`DeliveryRetryable` for the queue to retry."""
    async with runtime.sessionmaker() as session, session.begin():
        current = await session.get(Prescription, prescription_id)
        if current is None:
            return "missing"
        delivery = await ledger.current_delivery(session, current)
        if current.status != Status.EMAILED.value or delivery is None or not delivery.is_open:
            # Dispensed, voided, re-routed or expired since support asked: nothing to resend.
            if delivery is not None:
                session.add(
                    ledger.attempt_row(
                        delivery,
                        "resend",
                        "skipped",
                        datetime.now(UTC),
                        f"not resent: the prescription is {current.status}",
                        attempt=0,
                    )
                )
            return "skipped"
        attempt = 1 + (
            await session.scalar(
                select(func.count()).where(
                    DeliveryAttempt.delivery_id == delivery.id,
                    DeliveryAttempt.action == "resend",
                    DeliveryAttempt.attempt > 0,
                )
            )
            or 0
        )
        channel = get_channel(runtime, delivery.channel)
        loaded = await load_for_sending(session, prescription_id)
        started = datetime.now(UTC)
        delivery_id = delivery.id
        try:
            prepared = await channel.prepare(runtime, session, loaded, delivery, Purpose.RESEND)
        except NotSendable as exc:
            session.add(
                ledger.attempt_row(
                    delivery, "resend", "rejected", started, exc.message, attempt=attempt
                )
            )
            return "rejected"
    try:
        await channel.deliver(runtime, prepared)
    except DeliveryRejected as exc:
        await _finish(runtime, delivery_id, attempt, started, "rejected", exc.message)
        return "rejected"
    except DeliveryRetryable as exc:
        await _finish(runtime, delivery_id, attempt, started, "retryable", exc.message)
        raise
    await _finish(runtime, delivery_id, attempt, started, "succeeded", None)
    log.info(
        "support_email_resent",
        prescription_id=str(prescription_id),
        actor=requested_by,
        attempt=attempt,
    )
    return "succeeded"


async def _finish(
    runtime: Runtime,
    delivery_id: uuid.UUID,
    attempt: int,
    started: datetime,
    outcome: str,
    error: str | None,
) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        delivery = await ledger.get_delivery(session, delivery_id)
        session.add(
            ledger.attempt_row(delivery, "resend", outcome, started, error, attempt=attempt)
        )
    log.info("support_resend_finished", delivery_id=str(delivery_id), outcome=outcome)


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
