"""The stalled-job retrier's cadence follows the settings, and the default bound is < 60 s."""

from __future__ import annotations

import croniter
import pytest

from rxroute.config import Settings
from rxroute.job_worker import FETCH_POLLING_SECONDS
from rxroute.jobs import queue
from rxroute.maintenance.tasks import (
    PERIODIC_ID,
    retrier_period_seconds,
    retry_stalled_jobs,
    schedule_stalled_job_retrier,
)


@pytest.mark.parametrize(
    ("stalled", "period"), [(6, 2), (9, 3), (30, 10), (45, 15), (120, 30), (600, 60)]
)
def test_retrier_runs_three_times_per_stalled_interval_on_a_divisor_of_a_minute(
    stalled: int, period: int
) -> None:
    assert retrier_period_seconds(stalled) == period
    assert 60 % period == 0


def test_default_settings_resume_a_killed_workers_job_within_a_minute() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    # Stalled at most stalled_job_seconds after the kill (counted from the last heartbeat),
    # found by the next retrier run, fetched by the next poll of a live worker.
    bound = (
        settings.stalled_job_seconds
        + retrier_period_seconds(settings.stalled_job_seconds)
        + FETCH_POLLING_SECONDS
    )
    assert bound <= 42 < 60


def test_scheduling_again_replaces_the_schedule() -> None:
    key = (retry_stalled_jobs.name, PERIODIC_ID)
    before = queue.periodic_registry.periodic_tasks.get(key)
    try:
        for stalled in (30, 6):
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                stalled_job_seconds=stalled,
                worker_heartbeat_seconds=1,
                platform_call_deadline_seconds=1,
            )
            schedule_stalled_job_retrier(settings)
        scheduled = [
            task
            for (name, _), task in queue.periodic_registry.periodic_tasks.items()
            if name == retry_stalled_jobs.name
        ]
        assert len(scheduled) == 1
        ticks = croniter.croniter(scheduled[0].cron, 0)
        assert [ticks.get_next(float) for _ in range(4)] == [2.0, 4.0, 6.0, 8.0]
    finally:
        queue.periodic_registry.periodic_tasks.pop(key, None)
        if before is not None:
            queue.periodic_registry.periodic_tasks[key] = before
