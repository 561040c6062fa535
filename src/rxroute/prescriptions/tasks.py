"""Background jobs for prescriptions: sending through the region's channel.

Each job is safe to run twice (the stalled-job retrier may do exactly that): sending looks
the prescription up on the platform before issuing whenever an earlier run may have got
there first.
"""

from __future__ import annotations

import uuid

import procrastinate
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.registry import erx_channel
from rxroute.jobs import defer_in_session, queue
from rxroute.models import Prescription
from rxroute.prescriptions.sending import RetryScheduler, send_via_erx
from rxroute.runtime import get_runtime

log = structlog.get_logger(__name__)


def send_lock(prescription_id: uuid.UUID | str) -> str:
    return f"prescription:{prescription_id}"


@queue.task(
    name="send_prescription",
    # Unexpected errors (a database blip) retry the whole job, which is idempotent.
    retry=procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2),
)
async def send_prescription(prescription_id: str) -> str:
    runtime = get_runtime()
    key = uuid.UUID(prescription_id)
    async with runtime.sessionmaker() as session:
        prescription = await session.get(Prescription, key)
        channel = prescription.channel if prescription else None
    if prescription is None:
        log.warning("send_for_missing_prescription", prescription_id=prescription_id)
        return "missing"
    match channel:
        case "erx":
            outcome = await send_via_erx(
                runtime, erx_channel(runtime), key, schedule_retry=RetryScheduler()
            )
        case "email":
            from rxroute.prescriptions.email_sending import send_via_email

            outcome = await send_via_email(runtime, key)
        case _:
            log.error("send_without_channel", prescription_id=prescription_id, channel=channel)
            return "no-channel"
    return outcome.result


async def defer_send(
    session: AsyncSession, prescription_id: uuid.UUID, *, delay_seconds: float | None = None
) -> int:
    return await defer_in_session(
        session,
        send_prescription,
        lock=send_lock(prescription_id),
        delay_seconds=delay_seconds,
        prescription_id=str(prescription_id),
    )
