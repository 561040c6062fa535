"""Finished jobs leave the job queue's tables after the retention period; others never do."""

from __future__ import annotations

from sqlalchemy import text

from rxroute.maintenance.tasks import purge_finished_jobs_once
from rxroute.runtime import Runtime

#: The way procrastinate's own triggers record each status (and so when a job ended).
_PATHS = {
    "todo": (),
    "doing": ("doing",),
    "succeeded": ("doing", "succeeded"),
    "failed": ("doing", "failed"),
    "cancelled": ("cancelled",),
}


async def _job(db: Runtime, status: str, ended_hours_ago: int) -> int:
    async with db.engine.begin() as connection:
        job_id = int(
            await connection.scalar(
                text(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
                    "VALUES ('default', 'send_prescription', '{}') RETURNING id"
                )
            )
        )
        for step in _PATHS[status]:
            await connection.execute(
                text(
                    "UPDATE procrastinate_jobs "
                    "SET status = CAST(:status AS procrastinate_job_status) WHERE id = :id"
                ),
                {"status": step, "id": job_id},
            )
        await connection.execute(
            text(
                "UPDATE procrastinate_events SET at = NOW() - make_interval(hours => :hours) "
                "WHERE job_id = :id"
            ),
            {"hours": ended_hours_ago, "id": job_id},
        )
    return job_id


async def _remaining(db: Runtime) -> set[int]:
    async with db.engine.connect() as connection:
        rows = await connection.scalars(text("SELECT id FROM procrastinate_jobs"))
        return {int(row) for row in rows}


async def test_finished_jobs_past_retention_are_deleted(db: Runtime) -> None:
    hours = db.settings.job_retention_hours
    old = {await _job(db, status, hours + 1) for status in ("succeeded", "failed", "cancelled")}
    recent = await _job(db, "succeeded", hours - 1)
    waiting = await _job(db, "todo", hours + 100)
    running = await _job(db, "doing", hours + 100)

    await purge_finished_jobs_once(db.settings)

    remaining = await _remaining(db)
    assert remaining.isdisjoint(old)
    assert {recent, waiting, running} <= remaining
