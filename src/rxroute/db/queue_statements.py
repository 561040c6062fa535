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

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
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


_NAMED_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class NativeStatement:
    """A statement written with psycopg's named placeholders, run with PostgreSQL's own.

    psycopg turns ``%(name)s`` into ``$n`` on every execution, and caches that work only
    for statements up to 4,096 characters (``psycopg._queries``): a longer one, such as the
    send's record with the next job's load riding on it, is parsed again each time, which
    cost the worker more than the round trip it saved. Turned once here, the statement
    runs on a raw cursor (psycopg's own, for native placeholders), whose only work per
    execution is dumping the values, as for any statement.
    """

    text: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: str) -> NativeStatement:
        if "%" in _NAMED_PLACEHOLDER.sub("", statement):
            raise ValueError("only %(name)s placeholders, and no other %, are supported")
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${names.setdefault(match.group(1), len(names) + 1)}"

        return cls(_NAMED_PLACEHOLDER.sub(number, statement), tuple(names))

    async def execute(
        self, connection: psycopg.AsyncConnection[Any], values: Mapping[str, Any]
    ) -> psycopg.AsyncRawCursor[Any]:
        """Run it with ``values`` by name (a missing one raises KeyError; extras are unused)."""
        cursor = psycopg.AsyncRawCursor(connection)
        await cursor.execute(self.text, [values[name] for name in self.names])
        return cursor
