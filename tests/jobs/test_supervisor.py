"""The supervising loop as the demo uses it in-process, and its one-line outage logs."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
from procrastinate.exceptions import ConnectorException
from psycopg import errors
from sqlalchemy import text

from rxroute.job_worker import _QuietOutages, _Worker, restart_delay, run_worker
from rxroute.runtime import Runtime
from tests.jobs.conftest import wait_until


async def _last_worker_id(db: Runtime) -> int:
    async with db.engine.connect() as connection:
        last = await connection.scalar(text("SELECT max(id) FROM procrastinate_workers"))
    return int(last or 0)


async def _registered_workers(db: Runtime, after: int) -> int:
    """Workers registered since the one numbered ``after``: other tests on this database
    register workers of their own and may leave them."""
    async with db.engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM procrastinate_workers WHERE id > :after"),
            {"after": after},
        )
    return int(count or 0)


async def test_in_process_worker_runs_until_cancelled(
    db: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="procrastinate.worker")
    before = await _last_worker_id(db)
    task = asyncio.create_task(run_worker(db.settings, 1, install_signal_handlers=False))

    async def started() -> bool:
        # The row is committed a moment before procrastinate's run() reaches the code that
        # unregisters on cancellation; its "start_worker" log comes after that point.
        assert not task.done(), task
        began = any(getattr(r, "action", None) == "start_worker" for r in caplog.records)
        return began and await _registered_workers(db, before) == 1

    await wait_until(started, "the worker to register and start", timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert await _registered_workers(db, before) == 0, "a cancelled worker unregisters"


async def test_a_cancelled_supervisor_stops_when_the_worker_fails_on_the_way_out(
    db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """procrastinate's ``run()`` answers a cancellation by stopping and awaiting its loop;
    an outage met there replaces the ``CancelledError``. Taken for an outage, that restarted
    the worker forever, so nothing could stop the supervisor (a test session's teardown
    hung on it). Cancelled means stop, whatever error the worker ends with."""
    running = asyncio.Event()
    runs = 0

    async def run(self: object) -> None:
        nonlocal runs
        runs += 1
        if runs > 1:  # restarted after the cancel: end here, so the test fails, not hangs
            raise RuntimeError("the supervisor restarted a cancelled worker")
        running.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise _outage()  # noqa: B904 (as procrastinate lets it escape)

    monkeypatch.setattr(_Worker, "run", run)
    task = asyncio.create_task(run_worker(db.settings, 1, install_signal_handlers=False))
    await asyncio.wait_for(running.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


def test_restart_delays_grow_to_a_cap_with_jitter() -> None:
    delays = [restart_delay(n) for n in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert 2.0 <= delays[3] <= 4.0
    assert all(15.0 <= d <= 30.0 for d in delays[7:])


def _record(
    action: str, error: BaseException | None, name: str = "procrastinate.worker"
) -> logging.LogRecord:
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, "job %s failed", ("7",), exc_info)
    record.action = action
    record.task_name = "listener"
    return record


def _outage() -> ConnectorException:
    try:
        raise ConnectorException from errors.AdminShutdown("terminating connection")
    except ConnectorException as exc:
        return exc


def test_a_side_task_outage_is_left_to_the_supervisors_line() -> None:
    quiet = _QuietOutages()
    assert quiet.filter(_record("side_task_failed", _outage())) is False
    assert quiet.take_side_task_outage() == "listener: the server terminated the connection"
    assert quiet.take_side_task_outage() is None
    shutdown = _record("listener_error", _outage(), name="procrastinate.utils")
    assert quiet.filter(shutdown) is False


def test_a_job_outage_keeps_its_line_without_the_traceback() -> None:
    record = _record("job_error_retry", _outage())
    assert _QuietOutages().filter(record) is True
    assert record.exc_info is None
    assert record.getMessage() == (
        "job 7 failed (database unavailable: the server terminated the connection)"
    )


def test_other_errors_keep_their_traceback() -> None:
    try:
        raise ValueError("a bug")
    except ValueError:
        record = _record("side_task_failed", sys.exc_info()[1])
    assert _QuietOutages().filter(record) is True
    assert record.exc_info is not None
