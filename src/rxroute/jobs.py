"""The procrastinate application: one job queue in rxroute's own PostgreSQL database.

Tasks live next to their feature (``<feature>/tasks.py``) and register on :data:`queue`.
Jobs are deferred inside the caller's transaction (:func:`defer_in_session`), so a job exists
exactly when the state it acts on was committed. The worker that runs them, supervised
through outages, is :mod:`rxroute.job_worker`.
"""

from __future__ import annotations

from typing import Any

import procrastinate
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.db.engine import session_options
from rxroute.job_preloads import PreloadingJobManager

TASK_MODULES = [
    "rxroute.auth.tasks",
    "rxroute.events.tasks",
    "rxroute.maintenance.tasks",
    "rxroute.notifications.tasks",
    "rxroute.prescriptions.tasks",
    "rxroute.support.tasks",
    "rxroute.webhooks.tasks",
]

queue = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),
    import_paths=TASK_MODULES,
)
# Our worker's fetch also reads what the fetched job's task starts with (job_preloads).
queue.job_manager = PreloadingJobManager(connector=queue.connector)


#: How long a queue operation waits for a pooled connection before failing (during an outage
#: the worker restarts after this instead of hanging on a pool that cannot connect).
POOL_TIMEOUT_SECONDS = 10.0


def make_pool(libpq_url: str, *, max_size: int = 10, check: bool = False) -> AsyncConnectionPool:
    """The job queue's connection pool: ``max_size`` connections, opened at start and kept.

    Autocommit: every query procrastinate sends through its pool is one statement (a call
    of its own SQL functions), so each costs one round trip instead of BEGIN, the
    statement and COMMIT; the webhook receiver's store-and-defer statement relies on the
    same. ``min_size`` equals ``max_size``, so a burst never opens or closes connections.
    ``check``: ping a connection before handing it out (``RXROUTE_DB_POOL_PRE_PING``;
    procrastinate does so for pools it creates itself, but uses a pool it is given as it
    is); off, a connection the server dropped fails one query and is replaced.
    """
    return AsyncConnectionPool(
        libpq_url,
        min_size=max_size,
        max_size=max_size,
        open=False,
        check=AsyncConnectionPool.check_connection if check else None,
        # Not ``autocommit`` in ``kwargs``: procrastinate opens its LISTEN connection with
        # the pool's kwargs plus its own ``autocommit=True``, and the two would collide.
        configure=_autocommit,
        kwargs={"options": session_options(libpq_url)},
        timeout=POOL_TIMEOUT_SECONDS,
    )


async def _autocommit(connection: AsyncConnection[Any]) -> None:
    await connection.set_autocommit(True)


async def raw_connection(session: AsyncSession) -> Any:
    """The psycopg connection under a SQLAlchemy session, for deferring in its transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def defer_in_session(
    session: AsyncSession,
    task: Any,
    *,
    lock: str | None = None,
    delay_seconds: float | None = None,
    **kwargs: Any,
) -> int:
    """Defer ``task`` in the session's transaction: committed with it or not at all."""
    options: dict[str, Any] = {"connection": await raw_connection(session)}
    if lock is not None:
        options["lock"] = lock
    if delay_seconds:
        options["schedule_in"] = {"seconds": delay_seconds}
    job_id: int = await task.configure(**options).defer_async(**kwargs)
    return job_id


def job_to_defer(
    task: Any, *, lock: str | None = None, delay_seconds: float | None = None, **kwargs: Any
) -> dict[str, Any]:
    """``task`` as procrastinate's ``procrastinate_job_to_defer_v1`` row, as JSON.

    For deferring inside a larger SQL statement (the send job's one-statement record, see
    :mod:`rxroute.deliveries.common_path`), with ``procrastinate_defer_jobs_v1``: the job is
    built by procrastinate itself (``configure().make_new_job``), as :func:`defer_in_session`
    builds it, so queue, priority, lock and arguments cannot drift apart.
    """
    options: dict[str, Any] = {}
    if lock is not None:
        options["lock"] = lock
    if delay_seconds:
        options["schedule_in"] = {"seconds": delay_seconds}
    job = task.configure(**options).make_new_job(**kwargs)
    return {
        "queue_name": job.queue,
        "task_name": job.task_name,
        "priority": job.priority,
        "lock": job.lock,
        "queueing_lock": job.queueing_lock,
        "args": job.task_kwargs,
        "scheduled_at": job.scheduled_at.isoformat() if job.scheduled_at else None,
    }
