"""Periodic housekeeping.

A worker killed mid-job leaves the job in ``doing``; :func:`retry_stalled_jobs` finds jobs
whose worker sent no heartbeat for ``RXROUTE_STALLED_JOB_SECONDS`` (or that no worker owns
any more) and queues them again. Every job rxroute defines is written to be safe to run
twice, which is what makes this retry safe.

How soon a killed worker's job runs again is bounded by: the stalled interval (counted from
its last heartbeat, so at most that long after the kill), plus the retrier's period, plus one
poll of a live worker. The period is a third of the stalled interval, so the default 30 s
gives at most about 30 + 10 + 2 seconds.

:func:`purge_idempotency_keys` deletes idempotency keys past their retention, hourly, so a
key lives between ``RXROUTE_IDEMPOTENCY_RETENTION_HOURS`` and an hour more (lookups
treat an older key as gone whether or not it was purged yet).
"""

from __future__ import annotations

import structlog
from procrastinate.exceptions import ConnectorException

from rxroute.config import Settings
from rxroute.db.engine import outage_reason
from rxroute.idempotency import purge_expired
from rxroute.jobs import queue
from rxroute.runtime import get_runtime

log = structlog.get_logger(__name__)

PERIODIC_ID = "retry-stalled-jobs"


@queue.task(name="retry_stalled_jobs", queueing_lock="retry_stalled_jobs", pass_context=False)
async def retry_stalled_jobs(timestamp: int) -> int:
    seconds = get_runtime().settings.stalled_job_seconds
    stalled = list(await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds))
    retried = 0
    for job in stalled:
        try:
            await queue.job_manager.retry_job(job)
        except ConnectorException as exc:
            if outage_reason(exc) is not None:
                raise
            # It finished (or was retried) between the query above and now: nothing to do.
            log.info("stalled_job_moved_on", job_id=job.id, task=job.task_name)
            continue
        retried += 1
        log.warning("stalled_job_retried", job_id=job.id, task=job.task_name)
    return retried


@queue.periodic(cron="23 * * * *", periodic_id="purge-idempotency-keys")
@queue.task(name="purge_idempotency_keys", queueing_lock="purge_idempotency_keys")
async def purge_idempotency_keys(timestamp: int) -> int:
    return await purge_expired(get_runtime())


def retrier_period_seconds(stalled_job_seconds: int) -> int:
    """Seconds between retrier runs: the largest divisor of 60 not above a third of the
    stalled interval (a cron seconds field repeats evenly only on divisors of a minute)."""
    target = max(1, stalled_job_seconds // 3)
    return max(d for d in range(1, 61) if 60 % d == 0 and d <= target)


def schedule_stalled_job_retrier(settings: Settings) -> None:
    """Register the retrier as a periodic job at the cadence the settings call for.

    Registered when a worker starts rather than at import, since the cadence comes from
    settings; registering again (a restarted worker) replaces the earlier schedule.
    """
    period = retrier_period_seconds(settings.stalled_job_seconds)
    registry = queue.periodic_registry
    registry.periodic_tasks.pop((retry_stalled_jobs.name, PERIODIC_ID), None)
    registry.register_task(
        task=retry_stalled_jobs,
        # croniter's optional sixth field is seconds.
        cron=f"* * * * * */{period}",
        periodic_id=PERIODIC_ID,
        configure_kwargs={},
    )


# --- finished jobs --------------------------------------------------------------------------


async def purge_finished_jobs_once(settings: Settings) -> None:
    """Delete jobs that ended more than ``RXROUTE_JOB_RETENTION_HOURS`` ago, with their events.

    procrastinate keeps every finished job forever; at thousands of sends a day the jobs
    table would grow without bound. Uses procrastinate's own deletion (the query its
    ``remove_old_jobs`` builtin runs), so it stays right across procrastinate's schema changes.
    Failed jobs go too: what a failure means is recorded in deliveries and history.
    """
    await queue.job_manager.delete_old_jobs(
        nb_hours=settings.job_retention_hours,
        include_failed=True,
        include_cancelled=True,
        include_aborted=True,
    )


@queue.periodic(cron="29 * * * *", periodic_id="purge-finished-jobs")
@queue.task(name="purge_finished_jobs", queueing_lock="purge_finished_jobs", pass_context=False)
async def purge_finished_jobs(timestamp: int) -> None:
    await purge_finished_jobs_once(get_runtime().settings)
