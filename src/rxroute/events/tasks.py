"""Jobs: deliver a stream of events, re-queue streams whose job is gone, purge old events.

A *stream* is one endpoint's events about one prescription. Its job runs under the
procrastinate lock :func:`stream_lock`, so one job at a time works on it, on any number of
workers; it sends the oldest undelivered event first and stops at the first failure, so a
later event never overtakes an earlier one. After a failure the same transaction that
records it makes sure a job runs again when the retry is due (:func:`wake_stream`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import procrastinate
import structlog
from sqlalchemy import exists, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.db.purge import delete_in_batches
from rxroute.events.delivery import (
    REQUEST_TIMEOUT_SECONDS,
    Outgoing,
    Waiting,
    next_outgoing,
    record_outcome,
    send,
)
from rxroute.jobs import defer_in_session, job_to_defer, queue
from rxroute.models import EventDelivery, EventDeliveryState, OutboxEvent
from rxroute.runtime import Runtime, get_runtime

log = structlog.get_logger(__name__)

#: Streams whose due event has had no job for this long are given one by the sweep.
ORPHANED_AFTER = timedelta(seconds=30)
SWEEP_BATCH = 500


def stream_lock(endpoint_id: uuid.UUID, prescription_id: uuid.UUID) -> str:
    return f"events:{endpoint_id}:{prescription_id}"


@queue.task(
    name="deliver_events",
    # Only for errors of our own (the database out of reach mid-run); the endpoint's
    # failures are recorded and rescheduled by the job itself.
    retry=procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2),
)
async def deliver_events(endpoint_id: str, prescription_id: str) -> int:
    return await deliver_stream(get_runtime(), uuid.UUID(endpoint_id), uuid.UUID(prescription_id))


async def deliver_stream(
    runtime: Runtime, endpoint_id: uuid.UUID, prescription_id: uuid.UUID
) -> int:
    """Send the stream's due events in order until one fails; returns how many were sent.

    Each attempt reads in one transaction, posts with none open, records in another.
    """
    delivered = 0
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False) as client:
        while True:
            async with runtime.sessionmaker() as session, session.begin():
                found = await next_outgoing(
                    session,
                    runtime.settings,
                    runtime.secret_box,
                    endpoint_id,
                    prescription_id,
                    datetime.now(UTC),
                )
                if isinstance(found, Waiting):
                    await wake_stream(session, endpoint_id, prescription_id, at=found.at)
            if not isinstance(found, Outgoing):
                return delivered
            outcome = await send(client, found)
            async with runtime.sessionmaker() as session, session.begin():
                retry_at = await record_outcome(session, runtime.settings, found, outcome)
                if retry_at is not None:
                    await wake_stream(session, endpoint_id, prescription_id, at=retry_at)
            if not outcome.delivered:
                return delivered
            delivered += 1


async def defer_stream(
    session: AsyncSession, endpoint_id: uuid.UUID, prescription_id: uuid.UUID
) -> int:
    """A job for the stream, now, in the session's transaction."""
    return await defer_in_session(
        session,
        deliver_events,
        lock=stream_lock(endpoint_id, prescription_id),
        endpoint_id=str(endpoint_id),
        prescription_id=str(prescription_id),
    )


def stream_job(endpoint_id: uuid.UUID, prescription_id: uuid.UUID) -> dict[str, Any]:
    """The same job as :func:`defer_stream`, as a row to defer inside a SQL statement."""
    return job_to_defer(
        deliver_events,
        lock=stream_lock(endpoint_id, prescription_id),
        endpoint_id=str(endpoint_id),
        prescription_id=str(prescription_id),
    )


async def bring_forward(
    session: AsyncSession, endpoint_id: uuid.UUID, prescription_id: uuid.UUID, *, at: datetime
) -> None:
    """Waiting jobs of the stream scheduled after ``at`` run at ``at`` instead.

    Jobs of one lock start in the order they were deferred, whatever their schedule, so a
    job added now would wait behind one scheduled for later.
    """
    await session.execute(
        text(
            "UPDATE procrastinate_jobs SET scheduled_at = :at "
            "WHERE lock = :lock AND status = 'todo' AND scheduled_at > :at"
        ),
        {"lock": stream_lock(endpoint_id, prescription_id), "at": at},
    )


async def wake_stream(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    prescription_id: uuid.UUID,
    *,
    at: datetime,
) -> None:
    """Make sure a job for the stream runs at ``at`` or sooner.

    Only from the stream's own job: no other job of the stream can start meanwhile, so one
    found waiting will run after this one, and none is added beside it.
    """
    await bring_forward(session, endpoint_id, prescription_id, at=at)
    lock = stream_lock(endpoint_id, prescription_id)
    waiting = await session.scalar(
        text("SELECT 1 FROM procrastinate_jobs WHERE lock = :lock AND status = 'todo' LIMIT 1"),
        {"lock": lock},
    )
    if waiting is None:
        await defer_in_session(
            session,
            deliver_events,
            lock=lock,
            delay_seconds=max(0.0, (at - datetime.now(UTC)).total_seconds()),
            endpoint_id=str(endpoint_id),
            prescription_id=str(prescription_id),
        )


# --- the sweep: streams whose job is gone -------------------------------------------------


async def sweep_once(runtime: Runtime, now: datetime | None = None) -> int:
    """Give a job to every stream whose next event is due and that has none.

    A job can vanish: the queue wiped, a job failed past its own retries, a worker's
    transaction lost. The events are in the outbox, so they are sent all the same.
    """
    moment = now or datetime.now(UTC)
    requeued = 0
    async with runtime.sessionmaker() as session, session.begin():
        rows = await session.execute(
            text(
                """
                WITH heads AS (
                    SELECT DISTINCT ON (endpoint_id, prescription_id)
                           endpoint_id, prescription_id, next_attempt_at
                      FROM event_deliveries
                     WHERE state <> 'delivered'
                     ORDER BY endpoint_id, prescription_id, event_seq
                )
                SELECT h.endpoint_id, h.prescription_id
                  FROM heads h
                  JOIN event_endpoints e ON e.id = h.endpoint_id
                 WHERE e.active
                   AND (NOT e.is_default OR :default_configured)
                   AND h.next_attempt_at < :cutoff
                   AND NOT EXISTS (
                       SELECT 1 FROM procrastinate_jobs j
                        WHERE j.lock = 'events:' || h.endpoint_id || ':' || h.prescription_id
                          AND j.status IN ('todo', 'doing'))
                 LIMIT :batch
                """
            ),
            {
                "cutoff": moment - ORPHANED_AFTER,
                "default_configured": bool(runtime.settings.events_url),
                "batch": SWEEP_BATCH,
            },
        )
        for endpoint_id, prescription_id in rows.all():
            await defer_stream(session, endpoint_id, prescription_id)
            requeued += 1
            log.warning(
                "event_stream_requeued",
                endpoint_id=str(endpoint_id),
                prescription_id=str(prescription_id),
            )
    return requeued


@queue.periodic(cron="* * * * *", periodic_id="sweep-event-deliveries")
@queue.task(name="sweep_event_deliveries", queueing_lock="sweep_event_deliveries")
async def sweep_event_deliveries(timestamp: int) -> int:
    return await sweep_once(get_runtime())


# --- retention ----------------------------------------------------------------------------


async def purge_once(runtime: Runtime, now: datetime | None = None) -> int:
    """Delete events older than ``RXROUTE_EVENTS_RETENTION_DAYS`` that nothing waits for
    (every delivery delivered, or none was due); returns how many. Undelivered ones stay."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=runtime.settings.events_retention_days)
    undelivered = exists().where(
        EventDelivery.event_id == OutboxEvent.id,
        EventDelivery.state != EventDeliveryState.DELIVERED.value,
    )
    return await delete_in_batches(
        runtime.sessionmaker, OutboxEvent, OutboxEvent.created_at < cutoff, ~undelivered
    )


@queue.periodic(cron="41 3 * * *", periodic_id="purge-outbox-events")
@queue.task(name="purge_outbox_events", queueing_lock="purge_outbox_events")
async def purge_outbox_events(timestamp: int) -> int:
    return await purge_once(get_runtime())
