"""Dead letters: an event whose processing fails its last attempt is marked ``failed``.

The job runs in procrastinate's real worker against the real queue; the retry back-off is
fast-forwarded by moving the retried job's ``scheduled_at`` to now (the only thing the test
changes about the queue), so every one of the strategy's attempts really runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import procrastinate
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.jobs import queue
from rxroute.models import InboundWebhookEvent, Role
from rxroute.runtime import Runtime
from rxroute.webhooks import dead_letters, processing
from rxroute.webhooks.registry import STATUS_CHANGED
from rxroute.webhooks.tasks import process_webhook_event
from tests.factories import make_user
from tests.webhooks.helpers import (
    encode,
    event_payload,
    job_context,
    new_prescription,
    provider_id_for,
    run_jobs,
    signed_headers,
    status_and_history,
)

#: Stands in for patient details an exception's text might quote: it must never be stored.
PHI_MARKER = "Jane Doe 1985-02-03"

Handler = Callable[[AsyncSession, InboundWebhookEvent, dict[str, Any]], Awaitable[str]]


def _runs_allowed() -> int:
    """Runs the task's own strategy allows: the first, then ``max_attempts`` retries."""
    strategy = process_webhook_event.retry_strategy
    assert isinstance(strategy, procrastinate.RetryStrategy)
    assert strategy.max_attempts
    return strategy.max_attempts + 1


def _use_handler(monkeypatch: pytest.MonkeyPatch, handler: Handler) -> None:
    monkeypatch.setattr(processing, "handlers", lambda: {STATUS_CHANGED: handler})


async def _receive(client: httpx.AsyncClient, runtime: Runtime, pid: uuid.UUID) -> uuid.UUID:
    """Deliver a signed ``dispensed`` webhook through the real endpoint; the stored event."""
    payload = event_payload(status="dispensed", provider_id=provider_id_for(pid))
    body = encode(payload)
    secret = runtime.settings.webhook_secret.get_secret_value()
    response = await client.post(
        "/webhooks/erx", content=body, headers=signed_headers(body, secret)
    )
    assert response.status_code == 200, response.text
    async with runtime.sessionmaker() as session:
        found = await session.scalar(
            text("SELECT id FROM inbound_webhook_events WHERE provider_event_id = :id"),
            {"id": payload["id"]},
        )
    assert isinstance(found, uuid.UUID)
    return found


async def _event(runtime: Runtime, event_id: uuid.UUID) -> InboundWebhookEvent:
    async with runtime.sessionmaker() as session:
        event = await session.get(InboundWebhookEvent, event_id)
        assert event is not None
        return event


async def _job(runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessionmaker() as session:
        rows = (
            (
                await session.execute(
                    text(
                        "SELECT status, attempts, scheduled_at > now() AS later "
                        "FROM procrastinate_jobs WHERE task_name = 'process_webhook_event'"
                    )
                )
            )
            .mappings()
            .all()
        )
    assert len(rows) == 1, rows
    return dict(rows[0])


async def _run_due_jobs() -> None:
    """One pass of the real worker over the jobs that are due now."""
    await queue.run_worker_async(
        concurrency=1,
        wait=False,
        install_signal_handlers=False,
        listen_notify=False,
        queues=["default"],
    )


async def _make_retry_due(runtime: Runtime) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE task_name = 'process_webhook_event' AND status = 'todo'"
            )
        )


async def test_every_attempt_failing_leaves_a_failed_event_not_a_pending_one(
    client: httpx.AsyncClient, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[uuid.UUID] = []

    async def broken(session: AsyncSession, event: InboundWebhookEvent, _: dict[str, Any]) -> str:
        calls.append(event.id)
        event.error = "half-done work, rolled back with the attempt"
        raise RuntimeError(f"cannot apply the status for {PHI_MARKER}")

    _use_handler(monkeypatch, broken)
    pid = await new_prescription(db)
    event_id = await _receive(client, db, pid)
    runs = _runs_allowed()
    for attempt in range(1, runs + 1):
        await _run_due_jobs()
        assert len(calls) == attempt
        event = await _event(db, event_id)
        job = await _job(db)
        if attempt < runs:
            # An earlier attempt: still pending, its writes rolled back, a retry scheduled.
            assert event.state == "pending", attempt
            assert (event.error, event.error_type, event.attempts) == (None, None, None)
            assert (job["status"], job["attempts"], job["later"]) == ("todo", attempt, True)
            await _make_retry_due(db)
    assert event.state == "failed"
    assert event.error_type == "RuntimeError"
    assert event.attempts == runs
    assert event.failed_at is not None
    assert event.error is not None
    assert f"failed {runs} times" in event.error and "builtins.RuntimeError" in event.error
    assert PHI_MARKER not in event.error
    assert job["status"] == "failed"
    status, _ = await status_and_history(db, pid)
    assert status == "issued"
    await _run_due_jobs()
    assert len(calls) == runs, "nothing is left to retry"


async def test_a_failure_before_the_last_attempt_is_retried_and_then_processed(
    client: httpx.AsyncClient, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = processing.handlers()[STATUS_CHANGED]
    calls = 0

    async def flaky(session: AsyncSession, event: InboundWebhookEvent, payload: Any) -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionResetError("the database went away")
        return await real(session, event, payload)

    _use_handler(monkeypatch, flaky)
    pid = await new_prescription(db)
    event_id = await _receive(client, db, pid)
    for _ in range(2):
        await _run_due_jobs()
        assert (await _event(db, event_id)).state == "pending"
        await _make_retry_due(db)
    await _run_due_jobs()
    event = await _event(db, event_id)
    assert (event.state, event.error_type, event.attempts) == ("processed", None, None)
    assert (await _job(db))["status"] == "succeeded"
    status, _ = await status_and_history(db, pid)
    assert status == "dispensed"


def test_the_last_attempt_is_the_task_strategys() -> None:
    runs = _runs_allowed()
    error = RuntimeError("x")
    assert not dead_letters.is_last_attempt(job_context(0), error)
    assert not dead_letters.is_last_attempt(job_context(runs - 2), error)
    assert dead_letters.is_last_attempt(job_context(runs - 1), error)
    assert dead_letters.attempt_number(job_context(runs - 1)) == runs


async def test_a_dead_letter_that_cannot_be_written_leaves_the_event_pending(
    db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database gone for the mark too: logged, the original error still raised."""
    pid = await new_prescription(db)
    async with db.sessionmaker() as session, session.begin():
        payload = event_payload(status="printed", provider_id=provider_id_for(pid))
        event = InboundWebhookEvent(
            provider="signaturerx",
            provider_event_id=payload["id"],
            event_type=payload["event"],
            payload=payload,
        )
        session.add(event)

    async def broken(*_: Any) -> str:
        raise RuntimeError("boom")

    async def unreachable(*_: Any, **__: Any) -> bool:
        raise OperationalError("UPDATE ...", {}, ConnectionRefusedError())

    _use_handler(monkeypatch, broken)
    monkeypatch.setattr(dead_letters, "mark_failed", unreachable)
    with pytest.raises(RuntimeError, match="boom"):
        await process_webhook_event(job_context(_runs_allowed() - 1), event_id=str(event.id))
    assert (await _event(db, event.id)).state == "pending"


async def test_a_last_attempt_failing_after_support_requeued_the_event_leaves_it_pending(
    db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Support re-queued a stale event while its old job was still retrying: the old job's
    last failure must not mark it failed under the new job, which then processes it."""
    pid = await new_prescription(db)
    payload = event_payload(status="dispensed", provider_id=provider_id_for(pid))
    async with db.sessionmaker() as session, session.begin():
        support = await make_user(session, Role.SUPPORT)
        event = InboundWebhookEvent(
            provider="signaturerx",
            provider_event_id=payload["id"],
            event_type=payload["event"],
            payload=payload,
            received_at=datetime.now(UTC) - 2 * dead_letters.STALE_PENDING_AFTER,
        )
        session.add(event)
    async with db.sessionmaker() as session, session.begin():
        await dead_letters.request_reprocess(session, support, event.id)

    async def broken(*_: Any) -> str:
        raise RuntimeError("boom")

    real = processing.handlers()
    _use_handler(monkeypatch, broken)
    old_job = job_context(_runs_allowed() - 1, job_id=-42)
    with pytest.raises(RuntimeError):
        await process_webhook_event(old_job, event_id=str(event.id))
    assert (await _event(db, event.id)).state == "pending"

    monkeypatch.setattr(processing, "handlers", lambda: real)
    await run_jobs(db)
    assert (await _event(db, event.id)).state == "processed"
    status, _ = await status_and_history(db, pid)
    assert status == "dispensed"
