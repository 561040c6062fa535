"""The job fetch walks the priority index whatever ANALYZE last saw (migration 0018).

A queue table is almost always analysed when nothing waits, so the planner expects one
waiting job; in ``bench/bench_send.py`` a burst of 2,000 then got a plan that read and
sorted every waiting job on each fetch (80 to 114 ms a fetch, the worker at half speed).
The fix is a setting on procrastinate's fetch function; these tests fail when the function
the worker calls lacks it (a procrastinate upgrade with a new fetch function must carry it
over) and show the fetch still follows procrastinate's rules with it.
"""

from __future__ import annotations

import re

import psycopg
from procrastinate.sql import queries
from psycopg.rows import dict_row
from sqlalchemy import text

from rxroute.runtime import Runtime


def fetch_function() -> str:
    """The function procrastinate's worker calls to take its next job."""
    match = re.search(r"FROM\s+(procrastinate_fetch_job\w*)\s*\(", queries["fetch_job"])
    assert match, queries["fetch_job"]
    return match.group(1)


async def test_the_function_the_worker_calls_never_sorts_the_backlog(db: Runtime) -> None:
    async with db.engine.connect() as connection:
        settings = await connection.scalar(
            text("SELECT proconfig FROM pg_proc WHERE proname = :name"),
            {"name": fetch_function()},
        )
    assert settings is not None and "enable_sort=off" in settings, settings


async def test_the_fetch_still_takes_jobs_by_priority_then_age_and_respects_locks(
    db: Runtime,
) -> None:
    async with db.engine.begin() as connection:
        worker_id = await connection.scalar(text("SELECT procrastinate_register_worker_v1()"))
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, priority, args) "
                "SELECT 'default', 'bench', 'prescription:' || n, 0, '{}' "
                "FROM generate_series(1, 500) AS n"
            )
        )
        # A later, more urgent job, and one behind a lock a running job holds.
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, priority, args, "
                "status, worker_id) VALUES ('default', 'held', 'held-lock', 0, '{}', 'doing', "
                ":worker)"
            ),
            {"worker": worker_id},
        )
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, priority, args) "
                "VALUES ('default', 'blocked', 'held-lock', 9, '{}'), "
                "('default', 'urgent', 'urgent-lock', 5, '{}')"
            )
        )
    taken: list[str] = []
    async with db.queue_pool.connection() as connection:
        cursor = connection.cursor(row_factory=dict_row)
        for _ in range(3):
            # procrastinate's own query, as the worker sends it.
            await cursor.execute(
                queries["fetch_job"], {"queues": ["default"], "worker_id": worker_id}
            )
            row = await cursor.fetchone()
            assert row is not None
            taken.append(row["lock"])
    assert taken == ["urgent-lock", "prescription:1", "prescription:2"]


LOCK_INDEX = "rxroute_procrastinate_jobs_waiting_lock"


async def test_the_fetch_looks_up_a_jobs_lock_holders_by_lock(
    db: Runtime, database_url: str
) -> None:
    """Migration 0020: each fetch reads the few jobs with the candidate's lock, not the whole
    ``(id, lock)`` index (one entry per waiting job). The plan is the fetch function's own,
    as the worker runs it, read through auto_explain."""
    async with db.engine.begin() as connection:
        worker_id = await connection.scalar(text("SELECT procrastinate_register_worker_v1()"))
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args) "
                "SELECT 'default', 'plan', 'plan:' || n, '{}' FROM generate_series(1, 300) AS n"
            )
        )
        await connection.execute(text("ANALYZE procrastinate_jobs"))
    plans: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        await connection.set_autocommit(True)
        connection.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_level = 'notice'",
            "SET client_min_messages = 'notice'",
        ):
            await connection.execute(setting)
        cursor = await connection.execute(
            queries["fetch_job"], {"queues": ["default"], "worker_id": worker_id}
        )
        assert await cursor.fetchone() is not None
    candidate = next((plan for plan in plans if "procrastinate_jobs_priority_idx" in plan), None)
    assert candidate is not None, plans
    assert f"Index Scan using {LOCK_INDEX}" in candidate, candidate
    assert "procrastinate_jobs_id_lock_idx_v1" not in candidate, candidate
