"""What processing one webhook event costs in SQL round trips (issue 13, goal 3: at most 8).

Counted where they leave the process: every psycopg cursor execute (the ORM's statements,
procrastinate's defers on the session's connection, a pool's checkout ping if one is
configured) and every COMMIT or ROLLBACK of an open transaction. The BEGIN psycopg sends
before a transaction's first statement is not counted, as in ``bench/bench_load.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from rxroute.models import InboundWebhookEvent
from rxroute.runtime import Runtime
from rxroute.webhooks.tasks import process_webhook_event
from tests.webhooks.helpers import (
    event_payload,
    job_context,
    new_prescription,
    provider_id_for,
    status_and_history,
)

MAX_ROUND_TRIPS = 8


@contextmanager
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The statements (and COMMIT/ROLLBACK) this process sends while the block runs."""
    sent: list[str] = []
    execute = psycopg.AsyncCursor.execute
    commit = psycopg.AsyncConnection.commit
    rollback = psycopg.AsyncConnection.rollback

    async def counted_execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(" ".join(str(query).split())[:120])
        return await execute(cursor, query, *args, **kwargs)

    def ending(name: str, original: Any) -> Any:
        async def counted(connection: Any) -> Any:
            if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                sent.append(name)
            return await original(connection)

        return counted

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.AsyncCursor, "execute", counted_execute)
        patch.setattr(psycopg.AsyncConnection, "commit", ending("COMMIT", commit))
        patch.setattr(psycopg.AsyncConnection, "rollback", ending("ROLLBACK", rollback))
        yield sent


async def _stored(runtime: Runtime, payload: dict[str, Any]) -> uuid.UUID:
    async with runtime.sessionmaker() as session, session.begin():
        stored = InboundWebhookEvent(
            provider="signaturerx",
            provider_event_id=payload["id"],
            event_type=payload["event"],
            payload=payload,
        )
        session.add(stored)
        await session.flush()
        return stored.id


@pytest.mark.parametrize("raw", ["signed", "printed"])
async def test_processing_a_status_event_takes_at_most_eight_round_trips(
    db: Runtime, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    """The common event: a known platform id moving an issued prescription on."""
    pid = await new_prescription(db)
    payload = event_payload(status=raw, provider_id=provider_id_for(pid), client_ref_id=str(pid))
    event_id = await _stored(db, payload)
    with round_trips(monkeypatch) as sent:
        state = await process_webhook_event(job_context(), str(event_id))
    assert state == "processed"
    status, history = await status_and_history(db, pid)
    assert status == raw
    assert [e.status for e in history][-2:] == ["issued", raw]
    assert len(sent) <= MAX_ROUND_TRIPS, sent


async def test_a_redelivered_event_costs_fewer_round_trips_and_changes_nothing(
    db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second event with the same fact (a new event id): recorded once, status unmoved."""
    pid = await new_prescription(db)
    first = event_payload(status="signed", provider_id=provider_id_for(pid), client_ref_id=str(pid))
    await process_webhook_event(job_context(), str(await _stored(db, first)))
    again = event_payload(status="signed", provider_id=provider_id_for(pid), client_ref_id=str(pid))
    event_id = await _stored(db, again)
    with round_trips(monkeypatch) as sent:
        assert await process_webhook_event(job_context(), str(event_id)) == "processed"
    status, history = await status_and_history(db, pid)
    assert status == "signed"
    assert [e.status for e in history].count("signed") == 1
    assert len(sent) < MAX_ROUND_TRIPS, sent
