"""Counting rxroute's own SQL round trips and transactions, for the send benchmark and its test.

Why not ``pg_stat_statements`` or ``pg_stat_database``: neither can tell rxroute's statements
from procrastinate's (fetching, finishing and heart-beating jobs share the server), and both
need server settings. This counts on the client instead, at psycopg, so it sees the ORM,
Core, raw SQL and the jobs deferred through a session's connection alike, and only on the
connections of rxroute's own SQLAlchemy engine, plus a connection of the job queue's pool
while rxroute's own code holds it for its own statements (:func:`counted`); procrastinate's
use of that pool is not counted.

What it counts, per connection of the engine:

* ``statements``: every execute (a ping, a query, a deferred job's insert);
* ``pings``: the pool's checkout health check among them (``pool_pre_ping``);
* ``begins``: the BEGIN psycopg sends by itself before a transaction's first statement (a
  round trip of its own, not visible to SQLAlchemy's events);
* ``commits``/``rollbacks``: those that ended an open transaction;
* ``transactions``: explicit ones (begins, including one a ping opened) plus statements
  run in autocommit mode, each of which the server runs as a transaction of its own
  (autocommit pings excluded).

``round_trips`` is statements + begins + commits + rollbacks: every message exchange.

A worker process counts when ``RXROUTE_SQL_COUNT_FILE`` names a file: the totals are written
there as JSON when the process exits, and whenever it gets SIGUSR1 (so a benchmark can take
a reading after its warm-up).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

ENV_VAR = "RXROUTE_SQL_COUNT_FILE"
_PING_QUERIES = frozenset({";", "select 1"})


@dataclass
class SqlCounts:
    statements: int = 0
    pings: int = 0
    begins: int = 0
    commits: int = 0
    rollbacks: int = 0
    autocommit_statements: int = 0

    @property
    def round_trips(self) -> int:
        return self.statements + self.begins + self.commits + self.rollbacks

    @property
    def transactions(self) -> int:
        return self.begins + self.autocommit_statements

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "round_trips": self.round_trips, "transactions": self.transactions}

    def minus(self, earlier: SqlCounts) -> SqlCounts:
        return SqlCounts(
            **{key: value - getattr(earlier, key) for key, value in asdict(self).items()}
        )

    def copy(self) -> SqlCounts:
        return SqlCounts(**asdict(self))


class SqlCounter:
    """Counts on the connections of the engines it was attached to (see the module doc)."""

    def __init__(self) -> None:
        self.counts = SqlCounts()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._originals: list[tuple[type, str, Any]] = []

    def attach(self, engine: AsyncEngine) -> None:
        """Count the engine's connections from now on (new and already pooled ones)."""

        @event.listens_for(engine.sync_engine, "engine_connect")
        def _on_connect(connection: Any) -> None:
            raw = connection.connection.dbapi_connection
            driver = getattr(raw, "driver_connection", None)
            if isinstance(driver, psycopg.AsyncConnection):
                self._connections.add(driver)

        @event.listens_for(engine.sync_engine.pool, "checkout")
        def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            driver = getattr(dbapi_connection, "driver_connection", None)
            if isinstance(driver, psycopg.AsyncConnection):
                self._connections.add(driver)

    def install(self) -> None:
        """Wrap psycopg's async execute, commit and rollback (once per process)."""
        if self._originals:
            return
        counter = self

        original_execute = psycopg.AsyncCursor.execute

        async def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            connection = cursor.connection
            if connection in counter._connections:
                counter._statement(connection, query)
            return await original_execute(cursor, query, *args, **kwargs)

        def ender(name: str) -> Any:
            original = getattr(psycopg.AsyncConnection, name)

            async def end(connection: Any) -> Any:
                if connection in counter._connections and (
                    connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
                ):
                    if name == "commit":
                        counter.counts.commits += 1
                    else:
                        counter.counts.rollbacks += 1
                return await original(connection)

            self._originals.append((psycopg.AsyncConnection, name, original))
            return end

        self._originals.append((psycopg.AsyncCursor, "execute", original_execute))
        psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign,assignment]
        psycopg.AsyncConnection.commit = ender("commit")  # type: ignore[method-assign]
        psycopg.AsyncConnection.rollback = ender("rollback")  # type: ignore[method-assign]
        _installed.append(self)

    def uninstall(self) -> None:
        for cls, name, original in reversed(self._originals):
            setattr(cls, name, original)
        self._originals.clear()
        if self in _installed:
            _installed.remove(self)

    def _statement(self, connection: Any, query: Any) -> None:
        counts = self.counts
        counts.statements += 1
        text = query if isinstance(query, str) else str(getattr(query, "as_string", lambda: "")())
        ping = text.strip().lower() in _PING_QUERIES
        counts.pings += ping
        if connection.autocommit:
            counts.autocommit_statements += not ping
        elif connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            counts.begins += 1


_process_counter: SqlCounter | None = None
#: The counters installed now (the process's, or a test's).
_installed: list[SqlCounter] = []


@contextmanager
def counted(connection: psycopg.AsyncConnection[Any]) -> Iterator[None]:
    """Count the statements on ``connection`` while rxroute's own code holds it.

    For a connection of the job queue's pool, which rxroute borrows for statements of its
    own (:mod:`rxroute.db.queue_statements`): they are rxroute's SQL like any other, while
    procrastinate's on the same pool before and after are not. Costs nothing uncounted.
    """
    holders = list(_installed)
    for counter in holders:
        counter._connections.add(connection)
    try:
        yield
    finally:
        for counter in holders:
            counter._connections.discard(connection)


def install_from_environment(engine: AsyncEngine) -> SqlCounter | None:
    """Count the engine's SQL when ``RXROUTE_SQL_COUNT_FILE`` is set (benchmarks only)."""
    global _process_counter
    path = os.environ.get(ENV_VAR)
    if not path:
        return None
    if _process_counter is None:
        _process_counter = SqlCounter()
        _process_counter.install()
        atexit.register(dump)
        signal.signal(signal.SIGUSR1, lambda *_: dump())
    _process_counter.attach(engine)
    return _process_counter


def dump() -> None:
    """Write the process's totals to ``RXROUTE_SQL_COUNT_FILE``."""
    path = os.environ.get(ENV_VAR)
    if _process_counter is not None and path:
        Path(path).write_text(json.dumps(_process_counter.counts.as_dict()))
