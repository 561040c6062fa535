"""Workers survive database outages: connections terminated mid-run, and connections refused.

Two real ``rxroute worker`` processes run cheap jobs while every connection they hold is
terminated (``pg_terminate_backend``) three times, then while the database refuses new
connections for 4 s. Afterwards both are still running, both take new jobs, every job
deferred before, during and after the outages has run to success, and their logs hold one
line per restart and no traceback.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.jobs.conftest import Driver, Workers, wait_until

pytestmark = pytest.mark.slow


def _log_events(text: str) -> list[dict[str, object]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


async def test_workers_survive_terminated_and_refused_connections(
    driver: Driver, workers: Workers
) -> None:
    first, second = await workers.start(2, concurrency=4)
    keys: list[str] = []

    async def defer(prefix: str, count: int, seconds: float = 0.0) -> list[str]:
        batch = [f"{prefix}-{n}" for n in range(count)]
        for key in batch:
            await driver.defer(key, seconds)
        keys.extend(batch)
        return batch

    await defer("before", 20, seconds=0.05)
    for blip in range(3):
        await defer(f"blip{blip}", 10, seconds=0.5)
        await asyncio.sleep(0.3)  # jobs mid-transaction when the connections go
        assert await driver.terminate_worker_connections() > 0
        await asyncio.sleep(1.0)
    async with driver.refusing_connections():
        await defer("refused", 10)  # the queue keeps accepting work meanwhile
        await asyncio.sleep(4.0)
    after = await defer("after", 16, seconds=0.5)

    async def all_done() -> bool:
        rows = await driver.rows("SELECT count(*) AS n FROM test_job_runs WHERE phase = 'done'")
        return int(rows[0]["n"]) == len(keys)

    await wait_until(all_done, f"all {len(keys)} jobs done", timeout=60)

    assert first.alive(), first.log()
    assert second.alive(), second.log()
    done = await driver.rows("SELECT key, pid FROM test_job_runs WHERE phase = 'done'")
    assert sorted(row["key"] for row in done) == sorted(keys), "every job ran, none twice"

    async def by_status() -> dict[str, int]:
        rows = await driver.rows(
            "SELECT status::text AS status, count(*) AS n FROM procrastinate_jobs "
            "WHERE task_name = 'tests.jobs.tick' GROUP BY status"
        )
        return {row["status"]: row["n"] for row in rows}

    async def all_succeeded() -> bool:
        return await by_status() == {"succeeded": len(keys)}

    # A job whose outcome could not be written (its worker's connection cut as it
    # finished) stays ``doing`` until the stalled-job retrier runs it again (6 s here).
    await wait_until(all_succeeded, "every job recorded as succeeded", timeout=60)
    assert await by_status() == {"succeeded": len(keys)}
    after_pids = {row["pid"] for row in done if row["key"] in after}
    # A worker may still be in its restart backoff (capped at 30 s) when the first batch is
    # taken by the other: keep offering work, bounded, until both have taken some.
    deadline = asyncio.get_running_loop().time() + 45
    while after_pids != {first.pid, second.pid} and asyncio.get_running_loop().time() < deadline:
        after += await defer(f"after-more-{len(keys)}", 4, seconds=0.5)
        await wait_until(all_done, f"all {len(keys)} jobs done", timeout=60)
        done = await driver.rows("SELECT key, pid FROM test_job_runs WHERE phase = 'done'")
        after_pids = {row["pid"] for row in done if row["key"] in after}
    assert after_pids == {first.pid, second.pid}, "both workers take new jobs after the outage"

    for worker in (first, second):
        log = worker.log()
        assert "Traceback" not in log, log
        restarts = [e for e in _log_events(log) if e.get("event") == "worker_restarting"]
        assert restarts, f"the refused connections should have restarted the worker:\n{log}"
        assert all(isinstance(e.get("reason"), str) and e["reason"] for e in restarts)
