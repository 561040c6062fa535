"""The reconciliation sweep at scale: failures back off, loads are batched, polls are bounded.

Against the real sandbox (tests/webhooks/conftest.py ``platform``): healthy prescriptions are
issued through the real send job; failing ones carry a platform id the sandbox never issued,
so asking about them fails with the platform's own error.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, update

from rxroute.channels.registry import get_channel
from rxroute.models import Delivery, Prescription
from rxroute.runtime import Runtime
from rxroute.webhooks import reconciliation
from rxroute.webhooks.reconciliation import BACKOFF_BASE, BACKOFF_CAP, backoff
from rxroute.webhooks.tasks import reconcile_once
from tests.webhooks.helpers import new_prescription, status_and_history
from tests.webhooks.test_reconciliation import _after_quiet_time, _issue, _wait_signed


async def _ghosts(runtime: Runtime, count: int, *, silent_since: datetime) -> list[uuid.UUID]:
    """``count`` issued prescriptions the platform never heard of, silent the longest."""
    ids = [
        await new_prescription(runtime, provider_id=f"SRXGHOST{n:06d}{uuid.uuid4().hex[:6]}")
        for n in range(count)
    ]
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(Prescription)
            .where(Prescription.id.in_(ids))
            .values(last_provider_update_at=silent_since)
        )
    return ids


async def _schedule(
    runtime: Runtime, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, datetime | None, datetime | None]]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(
                Prescription.id,
                Prescription.reconcile_failures,
                Prescription.reconcile_next_at,
                Prescription.last_provider_update_at,
            ).where(Prescription.id.in_(ids))
        )
        return {pid: (failures, next_at, heard) for pid, failures, next_at, heard in rows}


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [BACKOFF_BASE, 2 * BACKOFF_BASE, 4 * BACKOFF_BASE]
    assert backoff(50) == BACKOFF_CAP


async def test_failing_polls_back_off_and_do_not_starve_the_rest(
    db: Runtime, platform: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: the failing ones fill the whole first batch, at the head of the order.
    monkeypatch.setattr(reconciliation, "RECONCILE_BATCH", 4)
    healthy = await _issue(db, 20)
    await _wait_signed(platform, list(healthy.values()))
    ghosts = await _ghosts(db, 5, silent_since=datetime.now(UTC) - timedelta(days=1))
    # One healthy prescription had failed before: a success clears its backoff.
    recovered = next(iter(healthy))
    async with db.sessionmaker() as session, session.begin():
        await session.execute(
            update(Prescription).where(Prescription.id == recovered).values(reconcile_failures=3)
        )
    started = datetime.now(UTC)
    moment = _after_quiet_time(db)

    counts = await reconcile_once(now=moment)

    assert counts == {"polled": 20, "changed": 20, "errors": 5, "requeued": 0}
    schedule = await _schedule(db, [*healthy, *ghosts])
    for pid in healthy:
        failures, next_at, heard = schedule[pid]
        assert (failures, next_at) == (0, None)
        assert heard is not None and heard >= started
    for pid in ghosts:
        assert schedule[pid][:2] == (1, moment + BACKOFF_BASE)

    # Within the backoff the failing ones are not asked again.
    soon = await reconcile_once(now=moment + BACKOFF_BASE / 2)
    assert soon["errors"] == 0
    # After it they are, and the wait doubles.
    later = moment + BACKOFF_BASE + timedelta(seconds=1)
    again = await reconcile_once(now=later)
    assert again["errors"] == 5
    schedule = await _schedule(db, ghosts)
    for pid in ghosts:
        assert schedule[pid][:2] == (2, later + 2 * BACKOFF_BASE)


async def _statements_in_sweep(runtime: Runtime, moment: datetime) -> tuple[int, dict[str, int]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        counts = await reconciliation.sweep(now=moment)
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
    return len(seen), counts


async def test_a_batch_is_loaded_in_a_fixed_number_of_statements(
    db: Runtime, platform: httpx.AsyncClient
) -> None:
    """Three candidates or thirty: the same statements (read, load, back off), not per row."""
    old = datetime.now(UTC) - timedelta(days=1)
    await _ghosts(db, 3, silent_since=old)
    few, counts = await _statements_in_sweep(db, _after_quiet_time(db))
    assert counts["errors"] == 3
    await _ghosts(db, 30, silent_since=old)
    many, counts = await _statements_in_sweep(db, _after_quiet_time(db, 10_000))
    assert counts["errors"] == 33
    assert many == few
    # Candidates, 5 loads (prescriptions, items, patients, prescribers, pharmacies),
    # deliveries, one backoff update, and the empty read that ends the run.
    assert few <= 10


async def test_polls_run_concurrently_up_to_the_setting(
    db: Runtime, platform: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "settings", db.settings.model_copy(update={"reconcile_concurrency": 3}))
    healthy = await _issue(db, 12)
    await _wait_signed(platform, list(healthy.values()))
    channel = get_channel(db, "erx")
    real_poll = channel.poll
    in_flight = 0
    peak = 0

    async def slow_poll(runtime: Runtime, prepared: Any, ref: str) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.05)
            return await real_poll(runtime, prepared, ref)
        finally:
            in_flight -= 1

    monkeypatch.setattr(channel, "poll", slow_poll)
    counts = await reconcile_once(now=_after_quiet_time(db))
    assert counts["polled"] == 12
    assert peak == 3


async def test_quiet_polls_are_recorded_in_one_statement_per_batch(
    db: Runtime, platform: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls that tell nothing new write no history and cost one statement per batch; a
    changed one in the same batch still goes through the status path."""
    issued = await _issue(db, 9)
    await _wait_signed(platform, list(issued.values()))
    first = await reconcile_once(now=_after_quiet_time(db))  # issued -> signed: changes
    assert first["changed"] == 9
    pids = list(issued)
    moved = pids[0]
    answer = await platform.post(f"/_sandbox/prescriptions/{issued[moved]}/dispense")
    assert answer.json()["success"] is True
    before = {pid: (await status_and_history(db, pid))[1] for pid in pids}
    started = datetime.now(UTC)
    # A quiet poll must not open a transaction of its own through the status path.
    status_path = 0
    real_lock = reconciliation.lock_prescription

    async def counted_lock(*args: Any, **kwargs: Any) -> Any:
        nonlocal status_path
        status_path += 1
        return await real_lock(*args, **kwargs)

    monkeypatch.setattr(reconciliation, "lock_prescription", counted_lock)
    seen: list[str] = []

    def statement(*args: Any) -> None:
        seen.append(args[2])

    event.listen(db.engine.sync_engine, "before_cursor_execute", statement)
    try:
        counts = await reconcile_once(now=_after_quiet_time(db, 10_000))
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", statement)

    assert counts == {"polled": 9, "changed": 1, "errors": 0, "requeued": 0}
    assert status_path == 1
    stamps = [sql for sql in seen if " ".join(sql.split()).startswith("WITH stamped AS (UPDATE")]
    assert len(stamps) == 1
    assert (await status_and_history(db, moved))[0] == "dispensed"
    schedule = await _schedule(db, pids)
    for pid in pids[1:]:
        status, history = await status_and_history(db, pid)
        assert status == "signed"
        assert [e.seq for e in history] == [e.seq for e in before[pid]]  # nothing appended
        failures, next_at, heard = schedule[pid]
        assert (failures, next_at) == (0, None)
        assert heard is not None and heard >= started
    async with db.sessionmaker() as session:
        heard_of = list(
            await session.scalars(
                select(Delivery.last_heard_at).where(Delivery.prescription_id.in_(pids[1:]))
            )
        )
    assert len(heard_of) == 8
    assert all(at is not None and at >= started for at in heard_of)


async def test_the_next_batch_is_polled_while_the_last_answers_come_in(
    db: Runtime, platform: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 4, 3 polls in flight: a freed slot takes the next batch's first poll
    before the current batch's slowest answer, yet every prescription is asked once, the
    limit holds, and each batch's quiet answers are still stamped together."""
    monkeypatch.setattr(db, "settings", db.settings.model_copy(update={"reconcile_concurrency": 3}))
    monkeypatch.setattr(reconciliation, "RECONCILE_BATCH", 4)
    healthy = await _issue(db, 12)
    await _wait_signed(platform, list(healthy.values()))
    first = await reconcile_once(now=_after_quiet_time(db))  # issued -> signed: changes
    assert first["changed"] == 12
    batches: list[set[uuid.UUID]] = []
    real_load = reconciliation.load_batch

    async def recorded_load(session: Any, runtime: Runtime, ids: list[uuid.UUID]) -> Any:
        batches.append(set(ids))
        return await real_load(session, runtime, ids)

    channel = get_channel(db, "erx")
    real_poll = channel.poll
    by_ref = {ref: pid for pid, ref in healthy.items()}
    in_flight: set[uuid.UUID] = set()
    asked: list[uuid.UUID] = []
    started: set[int] = set()
    peak = 0
    overlapped = False

    async def slow_poll(runtime: Runtime, prepared: Any, ref: str) -> Any:
        nonlocal peak, overlapped
        pid = by_ref[ref]
        asked.append(pid)
        in_flight.add(pid)
        peak = max(peak, len(in_flight))
        spanned = {n for n, batch in enumerate(batches) if batch & in_flight}
        overlapped = overlapped or len(spanned) > 1
        mine = next(n for n, batch in enumerate(batches) if pid in batch)
        slowest = mine not in started
        started.add(mine)
        try:
            # Each batch's first poll answers last: the batch's slowest answer.
            await asyncio.sleep(0.3 if slowest else 0.02)
            return await real_poll(runtime, prepared, ref)
        finally:
            in_flight.discard(pid)

    monkeypatch.setattr(reconciliation, "load_batch", recorded_load)
    monkeypatch.setattr(channel, "poll", slow_poll)
    counts = await reconcile_once(now=_after_quiet_time(db, 10_000))
    assert counts == {"polled": 12, "changed": 0, "errors": 0, "requeued": 0}
    assert sorted(asked) == sorted(healthy)
    assert peak == 3
    assert overlapped
    assert [len(batch) for batch in batches] == [4, 4, 4]
