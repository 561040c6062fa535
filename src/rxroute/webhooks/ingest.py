"""Store a verified webhook and defer its processing job: one statement, one round trip.

The receiver's durable part used to be an ORM session (checkout, BEGIN, INSERT, the job's
INSERT through procrastinate, COMMIT): five round trips for each webhook. Here it is one
data-modifying CTE on a pooled psycopg connection in autocommit mode, so the statement is
its own transaction: the event is stored and its job exists together, or neither.

The job is deferred by calling procrastinate's own ``procrastinate_defer_jobs_v1`` (the
function procrastinate's ``defer_jobs`` query calls), so its triggers and the NOTIFY that
wakes a worker fire as for any other defer; the row's queue, priority, lock and arguments
come from procrastinate's ``Job`` for the task, never restated here. The function is called
only for a row the INSERT returned: a redelivery (ON CONFLICT DO NOTHING) defers nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rxroute.models import WebhookEventState

STORE_AND_DEFER = """
WITH stored AS (
    INSERT INTO inbound_webhook_events
        (id, provider, provider_event_id, event_type, payload, state, reprocess_count)
    VALUES (%(id)s, %(provider)s, %(event_id)s, %(event_type)s, %(payload)s, %(state)s, 0)
    ON CONFLICT (provider, provider_event_id) DO NOTHING
    RETURNING id
)
SELECT stored.id,
       (procrastinate_defer_jobs_v1(ARRAY[ROW(
           %(queue)s, %(task)s, %(priority)s, %(lock)s, %(queueing_lock)s,
           %(args)s, %(scheduled_at)s::timestamptz
       )]::procrastinate_job_to_defer_v1[]))[1] AS job_id
FROM stored
"""


def processing_job_row(event_id: uuid.UUID, lock_key: str) -> dict[str, Any]:
    """The job procrastinate itself would defer for ``process_webhook_event``."""
    from rxroute.webhooks.tasks import processing_deferrer

    job = processing_deferrer(lock_key).make_new_job(event_id=str(event_id))
    return {
        "queue": job.queue,
        "task": job.task_name,
        "priority": job.priority,
        "lock": job.lock,
        "queueing_lock": job.queueing_lock,
        "args": Jsonb(job.task_kwargs),
        "scheduled_at": job.scheduled_at,
    }


async def store_and_defer(
    pool: AsyncConnectionPool,
    *,
    provider: str,
    event_id: str,
    event_type: str,
    document: dict[str, Any],
    lock_key: str,
) -> uuid.UUID | None:
    """The stored event's id, or None when this provider event id was already stored."""
    new_id = uuid.uuid4()
    params = {
        "id": new_id,
        "provider": provider,
        "event_id": event_id,
        "event_type": event_type,
        "payload": Jsonb(document),
        "state": WebhookEventState.PENDING.value,
        **processing_job_row(new_id, lock_key),
    }
    async with pool.connection() as connection:
        previous = connection.autocommit
        await connection.set_autocommit(True)
        try:
            cursor = await connection.execute(STORE_AND_DEFER, params)
            row = await cursor.fetchone()
        finally:
            await connection.set_autocommit(previous)
    return None if row is None else new_id
