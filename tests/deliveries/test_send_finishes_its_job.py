"""The send job's record statement finishes the job it runs as (issue 13).

The common path's record marks its own procrastinate job ``succeeded`` in the statement
that records the delivery, so the outcome is committed with the state it describes and the
worker spends no round trip of its own on it (:class:`rxroute.job_running.RunningJob`). Only the
job this run holds is finished: one another worker holds is left to that worker. The
worker, told the job is finished, does not finish it a second time (procrastinate's own
finish would raise on a job no longer ``doing``). tests/deliveries/test_scale_out.py runs
the same with real worker processes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from procrastinate import jobs as procrastinate_jobs
from procrastinate.exceptions import ConnectorException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute import job_running, job_worker, jobs
from rxroute.deliveries.sending import RetryScheduler, send
from rxroute.job_running import RunningJob
from rxroute.prescriptions.tasks import send_lock
from tests.deliveries.test_send_budget import _queued
from tests.erx_sandbox import Erx
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture


async def insert_job(
    erx: Erx, task_name: str, args: dict[str, Any], *, queue_name: str, lock: str, held: bool
) -> tuple[int, int]:
    """A job and a registered worker: (job id, worker id). ``held``: the worker has taken
    the job (``doing``, as a fetch leaves it); otherwise it waits (``todo``)."""
    async with erx.runtime.engine.begin() as connection:
        worker_id = await connection.scalar(text("SELECT procrastinate_register_worker_v1()"))
        job_id = await connection.scalar(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status, "
                "worker_id) VALUES (:queue, :task, :lock, CAST(:args AS jsonb), "
                "CAST(:status AS procrastinate_job_status), :worker) RETURNING id"
            ),
            {
                "queue": queue_name,
                "task": task_name,
                "lock": lock,
                "args": json.dumps(args),
                "status": "doing" if held else "todo",
                "worker": worker_id if held else None,
            },
        )
    return int(job_id), int(worker_id)


async def _running_job(erx: Erx, prescription_id: uuid.UUID) -> RunningJob:
    """A send job for the prescription, taken by a registered worker (as a fetch leaves it)."""
    job_id, worker_id = await insert_job(
        erx,
        "send_prescription",
        {"prescription_id": str(prescription_id)},
        queue_name="default",
        lock=send_lock(prescription_id),
        held=True,
    )
    return RunningJob(job_id=job_id, worker_id=worker_id)


async def _job(erx: Erx, job_id: int) -> tuple[str, int]:
    async with erx.runtime.engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT status, attempts FROM procrastinate_jobs WHERE id = :id"),
                {"id": job_id},
            )
        ).one()
    return str(row.status), int(row.attempts)


async def test_the_record_finishes_the_send_job_it_runs_as(erx: Erx, session: AsyncSession) -> None:
    prescription_id = await _queued(erx, session)
    job = await _running_job(erx, prescription_id)

    outcome = await send(erx.runtime, prescription_id, schedule_retry=RetryScheduler(), job=job)

    assert outcome.result == "issued"
    assert job.finished
    # As procrastinate's own finish leaves it: succeeded, the attempt counted.
    assert await _job(erx, job.job_id) == ("succeeded", 1)


async def test_a_worker_that_deletes_succeeded_jobs_has_the_record_delete_it(
    erx: Erx, session: AsyncSession
) -> None:
    """As the worker's own finish would under ``delete_jobs`` ALWAYS or SUCCESSFUL."""
    prescription_id = await _queued(erx, session)
    held = await _running_job(erx, prescription_id)
    job = RunningJob(job_id=held.job_id, worker_id=held.worker_id, delete_when_succeeded=True)

    outcome = await send(erx.runtime, prescription_id, schedule_retry=RetryScheduler(), job=job)

    assert outcome.result == "issued"
    assert job.finished
    async with erx.runtime.engine.connect() as connection:
        left = await connection.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE id = :id"), {"id": job.job_id}
        )
    assert left == 0


async def test_a_send_job_another_worker_holds_is_left_to_that_worker(
    erx: Erx, session: AsyncSession
) -> None:
    prescription_id = await _queued(erx, session)
    held = await _running_job(erx, prescription_id)
    ours = RunningJob(job_id=held.job_id, worker_id=held.worker_id + 1000)

    outcome = await send(erx.runtime, prescription_id, schedule_retry=RetryScheduler(), job=ours)

    assert outcome.result == "issued"  # the send itself is recorded all the same
    assert not ours.finished
    assert await _job(erx, held.job_id) == ("doing", 0)


async def test_the_worker_does_not_finish_a_job_its_statement_finished(
    erx: Erx, session: AsyncSession
) -> None:
    prescription_id = await _queued(erx, session)
    running = await _running_job(erx, prescription_id)
    await send(erx.runtime, prescription_id, schedule_retry=RetryScheduler(), job=running)
    assert running.finished
    worker = job_worker._Worker(jobs.queue, concurrency=1, install_signal_handlers=False)
    job = procrastinate_jobs.Job(
        id=running.job_id,
        queue="default",
        lock=send_lock(prescription_id),
        queueing_lock=None,
        task_name="send_prescription",
        worker_id=running.worker_id,
    )
    outcome = {
        "job": job,
        "status": procrastinate_jobs.Status.SUCCEEDED,
        "retry_decision": None,
        "context": None,
        "job_result": None,
    }

    token = job_running._RUNNING_JOB.set(running)
    try:
        await worker._persist_job_status(**outcome)  # finished: nothing sent
    finally:
        job_running._RUNNING_JOB.reset(token)
    assert await _job(erx, running.job_id) == ("succeeded", 1)

    # Without the mark, procrastinate finishes it again, and refuses: the skip is real.
    running.finished = False
    token = job_running._RUNNING_JOB.set(running)
    try:
        with pytest.raises(ConnectorException):
            await worker._persist_job_status(**outcome)
    finally:
        job_running._RUNNING_JOB.reset(token)
