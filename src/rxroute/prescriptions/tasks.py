"""Background jobs for prescriptions: delivering through the region's channel.

One job for every channel (:func:`rxroute.deliveries.sending.send`): it withdraws earlier
deliveries marked for it, then sends the current one. It is safe to run twice (the
stalled-job retrier may do exactly that): it looks up before it would deliver again
whenever an earlier run may have got there, and a fencing check stops a run that lost
ownership of the delivery.
"""

from __future__ import annotations

import uuid
from typing import Any

import procrastinate
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute import job_preloads
from rxroute.deliveries import send_graph
from rxroute.deliveries.sending import RetryScheduler, send
from rxroute.job_running import running_job
from rxroute.jobs import defer_in_session, queue
from rxroute.observability.tracing import current_carrier, job_span
from rxroute.runtime import get_runtime

log = structlog.get_logger(__name__)


def send_lock(prescription_id: uuid.UUID | str) -> str:
    return f"prescription:{prescription_id}"


@queue.task(
    name="send_prescription",
    # Unexpected errors (a database blip) retry the whole job, which is idempotent.
    retry=procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2),
)
async def send_prescription(
    prescription_id: str, trace_context: dict[str, str] | None = None
) -> str:
    with job_span("send_prescription", trace_context, prescription_id=prescription_id):
        outcome = await send(
            get_runtime(),
            uuid.UUID(prescription_id),
            schedule_retry=RetryScheduler(),
            job=running_job(),
        )
    return outcome.result


# The worker's fetch of a send job reads the prescription's whole send graph with it: the
# common path's load then costs no statement of its own (rxroute.job_preloads).
job_preloads.register(
    job_preloads.Preload(
        task_name=send_prescription.name,
        argument="prescription_id",
        argument_type="uuid",
        select=send_graph.select_for,
        width=send_graph.WIDTH,
    )
)


async def defer_send(
    session: AsyncSession, prescription_id: uuid.UUID, *, delay_seconds: float | None = None
) -> int:
    # The request's (or job's) trace rides along only while tracing is on, so the job's
    # arguments are unchanged otherwise.
    carrier = current_carrier()
    extra: dict[str, Any] = {"trace_context": carrier} if carrier else {}
    return await defer_in_session(
        session,
        send_prescription,
        lock=send_lock(prescription_id),
        delay_seconds=delay_seconds,
        prescription_id=str(prescription_id),
        **extra,
    )
