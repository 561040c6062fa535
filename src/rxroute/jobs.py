"""The procrastinate application: one job queue in rxroute's own PostgreSQL database.

Tasks live next to their feature (``<feature>/tasks.py``) and register on :data:`queue`.
Jobs are deferred inside the caller's transaction (:func:`defer_in_session`), so a job exists
exactly when the state it acts on was committed.
"""

from __future__ import annotations

from typing import Any

import procrastinate
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncSession

TASK_MODULES = [
    "rxroute.maintenance.tasks",
    "rxroute.prescriptions.tasks",
    "rxroute.support.tasks",
    "rxroute.webhooks.tasks",
]

queue = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),
    import_paths=TASK_MODULES,
)


def make_pool(libpq_url: str, *, max_size: int = 10) -> AsyncConnectionPool:
    return AsyncConnectionPool(libpq_url, min_size=1, max_size=max_size, open=False)


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
