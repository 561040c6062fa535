"""The receiver's durable part: one statement on one pooled connection, procrastinate's row;
webhooks that arrive together share a statement, and one the database refuses fails alone.

Statements are counted on the real connection (a wrapper around the pool that counts what
reaches ``execute``), and the job row is compared column by column with the row
procrastinate's own ``defer_async`` writes for the same task and lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import PoolTimeout
from sqlalchemy import text

from rxroute.config import Settings
from rxroute.runtime import Runtime
from rxroute.webhooks.ingest import Arrival, IngestQueue, store_many
from rxroute.webhooks.tasks import processing_deferrer
from tests.webhooks.helpers import encode, signed_headers

URL = "/webhooks/erx"

SELECT_JOBS = text(
    "SELECT queue_name, task_name, priority, lock, queueing_lock, args, status, scheduled_at "
    "FROM procrastinate_jobs"
)


class _CountingConnection:
    def __init__(self, connection: Any, statements: list[str]) -> None:
        self._connection = connection
        self._statements = statements

    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        self._statements.append(str(query))
        return await self._connection.execute(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class _CountingPool:
    """The runtime's pool, recording every statement sent on the connections it lends."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.statements: list[str] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[_CountingConnection]:
        async with self.pool.connection() as connection:
            yield _CountingConnection(connection, self.statements)


async def _jobs(db: Runtime) -> list[Any]:
    async with db.engine.connect() as connection:
        rows = await connection.execute(SELECT_JOBS)
        return list(rows.all())


def _document(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "event": "prescription.status_changed",
        "data": {"prescription_id": "SRXINGEST0001", "status": "signed"},
    }


async def test_store_and_defer_is_one_statement_and_a_redelivery_defers_nothing(
    db: Runtime,
) -> None:
    pool = _CountingPool(db.queue_pool)
    arrival, redelivered = _arrival("evt_ingest_1"), _arrival("evt_ingest_1")
    first = await store_many(pool, "signaturerx", [arrival])  # type: ignore[arg-type]
    again = await store_many(pool, "signaturerx", [redelivered])  # type: ignore[arg-type]
    assert first == {arrival.id}
    assert again == set()
    assert len(pool.statements) == 2  # one per call, the redelivery's included
    jobs = await _jobs(db)
    assert len(jobs) == 1
    assert jobs[0].args == {"event_id": str(arrival.id)}
    # Nothing was left open on the pooled connection.
    async with db.queue_pool.connection() as connection:
        assert connection.info.transaction_status.name == "IDLE"
        assert connection.autocommit is True  # as the queue's pool lends every connection


async def test_job_row_is_the_row_procrastinate_itself_defers(db: Runtime) -> None:
    arrival = _arrival("evt_ingest_2")
    assert await store_many(db.queue_pool, "signaturerx", [arrival]) == {arrival.id}
    ours = await _jobs(db)
    async with db.engine.begin() as connection:
        await connection.execute(text("DELETE FROM procrastinate_jobs"))
    await processing_deferrer("SRXINGEST0001").defer_async(event_id=str(arrival.id))
    theirs = await _jobs(db)
    assert len(ours) == len(theirs) == 1
    assert ours[0] == theirs[0]
    assert ours[0].lock == "erx:SRXINGEST0001"


async def test_receiver_stores_with_one_statement_and_no_orm_session(
    client: httpx.AsyncClient,
    db: Runtime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = _CountingPool(db.queue_pool)
    monkeypatch.setattr(db, "queue_pool", counting)

    def no_session() -> Any:
        raise AssertionError("the receiver opened an ORM session")

    monkeypatch.setattr(db, "sessionmaker", no_session)
    body = encode(_document("evt_ingest_3"))
    secret = settings.webhook_secret.get_secret_value()
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "id": "evt_ingest_3"}
    assert len(counting.statements) == 1
    assert "procrastinate_defer_jobs_v1" in counting.statements[0]


def _arrival(event_id: str, document: dict[str, Any] | None = None) -> Arrival:
    return Arrival(
        event_id,
        "prescription.status_changed",
        document if document is not None else _document(event_id),
        "SRXINGEST0001",
    )


async def test_webhooks_arriving_together_share_one_statement(db: Runtime) -> None:
    pool = _CountingPool(db.queue_pool)
    ingest = IngestQueue("signaturerx", lambda: pool)
    arrivals = [_arrival(f"evt_batch_{n}") for n in range(10)]
    stored = await asyncio.gather(*(ingest.store(arrival) for arrival in arrivals))
    assert stored == [True] * 10
    assert len(pool.statements) == 1
    # One that arrives while a statement is in flight goes in the next one.
    later = [_arrival("evt_batch_first"), _arrival("evt_batch_second")]
    first = asyncio.create_task(ingest.store(later[0]))
    while not pool.statements[1:]:
        await asyncio.sleep(0)
    assert await asyncio.gather(first, ingest.store(later[1])) == [True, True]
    assert len(pool.statements) == 3
    jobs = await _jobs(db)
    expected = sorted(str(a.id) for a in arrivals + later)
    assert sorted(job.args["event_id"] for job in jobs) == expected


async def test_the_same_event_twice_in_one_statement_is_stored_once(db: Runtime) -> None:
    ingest = IngestQueue("signaturerx", lambda: db.queue_pool)
    first, second = _arrival("evt_twice"), _arrival("evt_twice")
    opener = _arrival("evt_opener")
    stored = await asyncio.gather(*(ingest.store(a) for a in (opener, first, second)))
    assert stored == [True, True, False]
    jobs = await _jobs(db)
    assert sorted(job.args["event_id"] for job in jobs) == sorted([str(opener.id), str(first.id)])


async def test_an_event_the_database_refuses_does_not_fail_the_others_in_its_statement(
    db: Runtime,
) -> None:
    ingest = IngestQueue("signaturerx", lambda: db.queue_pool)
    # U+0000 cannot be stored in jsonb (the receiver refuses it before this point).
    poison = _arrival("evt_poison", {"id": "evt_poison", "note": "\x00"})
    good = [_arrival("evt_good_1"), _arrival("evt_good_2")]
    results = await asyncio.gather(
        *(ingest.store(a) for a in (good[0], poison, good[1])), return_exceptions=True
    )
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], psycopg.Error)
    assert len(await _jobs(db)) == 2


class _UnreachablePool:
    """A pool whose database cannot be reached: every checkout fails, and is counted."""

    def __init__(self) -> None:
        self.checkouts = 0

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        self.checkouts += 1
        raise PoolTimeout("couldn't get a connection after 0.01 sec")
        yield  # an async generator, for the context manager


async def test_an_outage_fails_every_waiting_arrival_with_one_try() -> None:
    pool = _UnreachablePool()
    ingest = IngestQueue("signaturerx", lambda: pool)
    opener = asyncio.create_task(ingest.store(_arrival("evt_outage_opener")))
    while not pool.checkouts:
        await asyncio.sleep(0)
    waiting = [_arrival(f"evt_outage_{n}") for n in range(5)]
    results = await asyncio.gather(
        opener, *(ingest.store(a) for a in waiting), return_exceptions=True
    )
    assert all(isinstance(result, PoolTimeout) for result in results), results
    # The opener's try, then one for the five that waited: not one more try each.
    assert pool.checkouts == 2
