"""Test-only jobs, registered on rxroute's queue by the worker subprocesses that import them
(``python -m tests.jobs.worker_main``), never by rxroute itself.

Each run records what it did in ``test_job_runs`` through the app's own engine, so a test
sees which worker process ran which job, how often, and whether it finished.
"""

from __future__ import annotations

import os

import procrastinate
from sqlalchemy import text

from rxroute.jobs import queue
from rxroute.runtime import get_runtime

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS test_job_runs (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    pid integer NOT NULL,
    phase text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""
#: "done" is recorded once per key, however often the job runs.
RUNS_DONE_ONCE = (
    "CREATE UNIQUE INDEX IF NOT EXISTS test_job_runs_done ON test_job_runs (key) "
    "WHERE phase = 'done'"
)


async def _record(key: str, phase: str, *, hold_seconds: float = 0.0) -> None:
    """One row, in a transaction that first holds its connection busy for ``hold_seconds``
    (so a connection cut off meanwhile fails the job mid-transaction)."""
    async with get_runtime().sessionmaker() as session, session.begin():
        if hold_seconds:
            await session.execute(text("SELECT pg_sleep(:s)"), {"s": hold_seconds})
        await session.execute(
            text(
                "INSERT INTO test_job_runs (key, pid, phase) VALUES (:key, :pid, :phase) "
                "ON CONFLICT DO NOTHING"
            ),
            {"key": key, "pid": os.getpid(), "phase": phase},
        )


@queue.task(name="tests.jobs.tick", retry=procrastinate.RetryStrategy(max_attempts=20, wait=1))
async def tick(key: str, seconds: float = 0.0) -> None:
    """A cheap job that spends ``seconds`` inside its database transaction; retried when an
    outage interrupts it."""
    await _record(key, "started")
    await _record(key, "done", hold_seconds=seconds)
