"""rxroute's own single statements on the job queue's pool, in plain psycopg.

A statement that is a whole transaction by itself (autocommit) needs none of SQLAlchemy's
session, unit of work or result machinery, and on the hottest paths that machinery cost
several times the statement: a checkout from the engine's pool with an isolation level
switched there and back, a session, an execution context, a result. The job queue's pool
(:func:`rxroute.jobs.make_pool`) already keeps autocommit psycopg connections, sized one
per concurrent job plus the worker's own queries, so the send job's common path borrows one
from it, as the webhook receiver's store-and-defer does.

What the engine does for its own errors is done here too: a server error's text loses the
values it may quote (:func:`rxroute.db.engine.scrub_server_error`), and the statements are
counted as rxroute's own when counting is on (:func:`rxroute.observability.sqlcount.counted`).
A connection that broke is discarded by the pool; :func:`rxroute.db.engine.outage_reason`
reads psycopg's errors as it reads SQLAlchemy's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from rxroute.db.engine import scrub_server_error
from rxroute.observability.sqlcount import counted


@asynccontextmanager
async def single_statements(
    pool: AsyncConnectionPool,
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection of ``pool`` in autocommit: each statement on it commits by itself."""
    async with pool.connection() as connection:
        previous = connection.autocommit
        if not previous:
            await connection.set_autocommit(True)
        try:
            with counted(connection):
                yield connection
        except psycopg.Error as error:
            scrub_server_error(error)
            raise
        finally:
            if not previous and not connection.closed:
                await connection.set_autocommit(previous)
