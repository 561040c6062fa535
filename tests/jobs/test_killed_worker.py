"""A SIGKILLed worker's job runs again on another worker within the stalled-job bound.

Test-sized settings (heartbeat 1 s, stalled after 6 s, so the retrier runs every 2 s): the
job must not run again before its worker's heartbeat is stale, and must run again within
stalled + retrier period + one poll (about 10 s). The default settings give the same bound
at 30 + 10 + 2 = 42 s (checked in test_stalled_schedule.py).
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.jobs.conftest import Driver, Workers, wait_until

pytestmark = pytest.mark.slow

STALLED_SECONDS = 6
HEARTBEAT_SECONDS = 1


async def test_job_of_a_killed_worker_runs_again_on_another_within_the_bound(
    driver: Driver, workers: Workers
) -> None:
    first, second = await workers.start(2, concurrency=2)
    job_id = await driver.defer("slow", seconds=1.5)

    async def runs() -> list[dict[str, object]]:
        return await driver.rows(
            "SELECT pid, phase FROM test_job_runs WHERE key = 'slow' AND phase = 'started' "
            "ORDER BY id"
        )

    async def started_once() -> bool:
        return len(await runs()) == 1

    await wait_until(started_once, "the job to start", timeout=15)
    victim_pid = (await runs())[0]["pid"]
    victim, survivor = (first, second) if victim_pid == first.pid else (second, first)
    assert victim.pid == victim_pid
    victim.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.process.wait(timeout=5)

    async def started_twice() -> bool:
        return len(await runs()) == 2

    await wait_until(started_twice, "the job to run again", timeout=30)
    elapsed = time.monotonic() - killed_at
    # Not before the dead worker's last heartbeat is STALLED_SECONDS old...
    assert elapsed >= STALLED_SECONDS - HEARTBEAT_SECONDS - 1, elapsed
    # ...and no later than stalled + retrier period (2 s) + a poll (2 s), with slack.
    assert elapsed < STALLED_SECONDS + 2 + 2 + 3, elapsed
    assert (await runs())[1]["pid"] == survivor.pid

    async def finished() -> bool:
        rows = await driver.rows(
            "SELECT status::text AS status FROM procrastinate_jobs WHERE id = %(id)s", id=job_id
        )
        return rows[0]["status"] == "succeeded"

    await wait_until(finished, "the retried job to succeed", timeout=15)
    done = await driver.rows("SELECT pid FROM test_job_runs WHERE key = 'slow' AND phase = 'done'")
    assert [row["pid"] for row in done] == [survivor.pid]
    assert survivor.alive()
    print(f"killed worker's job ran again after {elapsed:.1f} s")
