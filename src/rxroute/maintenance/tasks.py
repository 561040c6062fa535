"""Periodic housekeeping.

A worker killed mid-job leaves the job in ``doing`` forever; :func:`retry_stalled_jobs` finds
jobs whose worker stopped sending heartbeats and queues them again. Every job rxroute defines
is written to be safe to run twice, which is what makes this retry safe.
"""

from __future__ import annotations

import structlog

from rxroute.jobs import queue
from rxroute.runtime import get_runtime

log = structlog.get_logger(__name__)


@queue.periodic(cron="*/1 * * * *", periodic_id="retry-stalled-jobs")
@queue.task(name="retry_stalled_jobs", queueing_lock="retry_stalled_jobs", pass_context=False)
async def retry_stalled_jobs(timestamp: int) -> int:
    seconds = get_runtime().settings.stalled_job_seconds
    stalled = list(await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds))
    for job in stalled:
        await queue.job_manager.retry_job(job)
        log.warning("stalled_job_retried", job_id=job.id, task=job.task_name)
    return len(stalled)
