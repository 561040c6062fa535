"""A killed worker leaves its jobs in ``doing``; the periodic retrier must put them back."""

from __future__ import annotations

from sqlalchemy import text

from rxroute.maintenance.tasks import retry_stalled_jobs
from rxroute.runtime import Runtime


async def _job_in_doing(db: Runtime, heartbeat_age_seconds: int) -> int:
    async with db.engine.begin() as connection:
        worker_id = await connection.scalar(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (NOW() - make_interval(secs => :age)) RETURNING id"
            ),
            {"age": heartbeat_age_seconds},
        )
        job_id = await connection.scalar(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status, "
                "worker_id) VALUES ('default', 'send_prescription', 'prescription:x', "
                "'{\"prescription_id\": \"x\"}', 'doing', :worker) RETURNING id"
            ),
            {"worker": worker_id},
        )
    return int(job_id)


async def _status(db: Runtime, job_id: int) -> str:
    async with db.engine.connect() as connection:
        value = await connection.scalar(
            text("SELECT status::text FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
        )
    return str(value)


async def test_job_of_a_dead_worker_is_retried(db: Runtime) -> None:
    job_id = await _job_in_doing(db, heartbeat_age_seconds=db.settings.stalled_job_seconds + 60)
    retried = await retry_stalled_jobs(timestamp=0)
    assert retried == 1
    assert await _status(db, job_id) == "todo"


async def test_job_of_a_live_worker_is_left_alone(db: Runtime) -> None:
    job_id = await _job_in_doing(db, heartbeat_age_seconds=1)
    retried = await retry_stalled_jobs(timestamp=0)
    assert retried == 0
    assert await _status(db, job_id) == "doing"
