"""rxroute's worker takes jobs in batches and hands them on (issue 13, rxroute.job_preloads).

procrastinate's worker fetches one job per statement and waits for each fetch before the
next. rxroute's takes a job for every free slot in one statement, and a send's record
statement, which finishes its own job, also takes the worker's next one, which then runs in
the same slot: a busy worker spends no fetch of its own between sends. Each job is still
taken by procrastinate's own fetch function, in its order and under its job locks.
tests/deliveries/test_scale_out.py runs the same with real worker processes, killed ones
included.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from procrastinate import jobs as procrastinate_jobs
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import rxroute.prescriptions.tasks  # noqa: F401 (registers the send's preload)
from rxroute import job_preloads, job_worker
from rxroute.db.queue_statements import NativeStatement
from rxroute.deliveries import common_record, send_graph
from rxroute.deliveries.sending import RetryScheduler, send
from rxroute.job_running import RunningJob
from rxroute.jobs import queue
from rxroute.prescriptions.tasks import send_lock
from tests.deliveries.test_send_budget import _queued, counted
from tests.deliveries.test_send_finishes_its_job import insert_job
from tests.erx_sandbox import Erx
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture


def _queue_name() -> str:
    """A queue of the test's own: other tests' jobs never interfere."""
    return f"batch-{uuid.uuid4().hex[:12]}"


async def _waiting(erx: Erx, queue_name: str, locks: list[str]) -> list[int]:
    """A job of a task with no preload waiting on ``queue_name`` for each lock, in order."""
    ids: list[int] = []
    for lock in locks:
        job_id, _worker = await insert_job(
            erx, "deliver_event_stream", {"n": len(ids)}, queue_name=queue_name, lock=lock,
            held=False,
        )  # fmt: skip
        ids.append(job_id)
    return ids


def _manager() -> job_preloads.PreloadingJobManager:
    manager = queue.job_manager
    assert isinstance(manager, job_preloads.PreloadingJobManager)
    return manager


async def _register_worker(erx: Erx) -> int:
    async with erx.runtime.engine.begin() as connection:
        return int(await connection.scalar(text("SELECT procrastinate_register_worker_v1()")))


async def _jobs(erx: Erx, ids: list[int]) -> list[tuple[str, int | None]]:
    async with erx.runtime.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT status, worker_id FROM procrastinate_jobs WHERE id = ANY(:ids) ORDER BY id"
            ),
            {"ids": ids},
        )
        return [(str(row.status), row.worker_id) for row in rows]


async def test_one_fetch_takes_a_job_for_each_free_slot_in_order(erx: Erx) -> None:
    queue_name = _queue_name()
    ids = await _waiting(erx, queue_name, [f"test:{uuid.uuid4()}" for _ in range(4)])
    worker_id = await _register_worker(erx)

    with job_preloads.fetching():
        taken = await _manager().fetch_jobs([queue_name], worker_id, 3)

    assert [job.id for job in taken] == ids[:3]
    assert await _jobs(erx, ids) == [("doing", worker_id)] * 3 + [("todo", None)]


async def test_a_batch_keeps_procrastinates_job_locks(erx: Erx) -> None:
    """A job whose lock an earlier job of the same batch took waits, as it would for a
    job another worker runs."""
    queue_name = _queue_name()
    shared = f"test:{uuid.uuid4()}"
    ids = await _waiting(erx, queue_name, [shared, shared, f"test:{uuid.uuid4()}"])
    worker_id = await _register_worker(erx)

    with job_preloads.fetching():
        taken = await _manager().fetch_jobs([queue_name], worker_id, 3)

    assert [job.id for job in taken] == [ids[0], ids[2]]
    assert await _jobs(erx, ids) == [("doing", worker_id), ("todo", None), ("doing", worker_id)]


async def test_an_empty_queue_gives_an_empty_batch(erx: Erx) -> None:
    worker_id = await _register_worker(erx)
    with job_preloads.fetching():
        assert await _manager().fetch_jobs([_queue_name()], worker_id, 4) == []


def test_each_batch_size_is_a_statement_of_its_own() -> None:
    """The count is in the text, so each prepared statement keeps one generic plan (a
    bound count made PostgreSQL plan every fetch again)."""
    three, _preloads = job_preloads._fetch_statement(3)
    assert "generate_series(1, 3)" in three
    assert "slots" not in three
    assert job_preloads._fetch_statement(3)[0] is three
    with pytest.raises(ValueError, match="at least 1"):
        job_preloads._fetch_statement(0)


def test_a_fetched_row_has_every_column_procrastinates_job_reads() -> None:
    """The columns come from procrastinate's own fetch_job query; a row with them (as our
    fetch and the hand-off select them) is a job to procrastinate, whatever its version."""
    assert job_preloads.JOB_COLUMNS[:3] == ("id", "status", "task_name")
    row = {name: None for name in job_preloads.JOB_COLUMNS} | {"id": 7, "args": {}}
    job = procrastinate_jobs.Job.from_row(row)
    assert job.id == 7 and job.task_kwargs == {}


def test_the_fetch_columns_are_read_across_lines_and_spaces() -> None:
    query = "SELECT id,\n  status , task_name\nFROM procrastinate_fetch_job_v2(%(queues)s, 1);"
    assert job_preloads.fetch_job_columns(query) == ("id", "status", "task_name")


def test_a_fetch_query_of_another_shape_stops_the_import() -> None:
    """A procrastinate whose fetch moved to another function would leave our fetch calling
    the old one: refused at import, naming what to update, not a KeyError in a worker."""
    for query in (
        "SELECT id, status FROM procrastinate_fetch_job_v3(%(queues)s, %(worker_id)s);",
        "SELECT * FROM procrastinate_fetch_job_v2(%(queues)s, %(worker_id)s);",
    ):
        with pytest.raises(RuntimeError, match="procrastinate_fetch_job_v2"):
            job_preloads.fetch_job_columns(query)


def test_batches_are_fetched_only_inside_our_worker() -> None:
    with pytest.raises(RuntimeError, match="inside fetching"):
        job_preloads.jobs_from_rows([], ())


async def _send_job(
    erx: Erx, prescription_id: uuid.UUID, queue_name: str, *, held: bool
) -> tuple[int, int]:
    """The prescription's send job on ``queue_name``, taken (``held``) or waiting:
    (job id, the id of the worker registered with it)."""
    return await insert_job(
        erx,
        "send_prescription",
        {"prescription_id": str(prescription_id)},
        queue_name=queue_name,
        lock=send_lock(prescription_id),
        held=held,
    )


async def _held_send(
    erx: Erx, prescription_id: uuid.UUID, queue_name: str, *, wants_next: bool
) -> RunningJob:
    """A send job for the prescription, taken by a registered worker, which takes jobs
    from ``queue_name`` and wants (or not) its next job handed on."""
    job_id, worker_id = await _send_job(erx, prescription_id, queue_name, held=True)
    return RunningJob(
        job_id=job_id, worker_id=worker_id, queues=[queue_name], wants_next=lambda: wants_next
    )


async def _waiting_send(erx: Erx, prescription_id: uuid.UUID, queue_name: str) -> int:
    job_id, _worker = await _send_job(erx, prescription_id, queue_name, held=False)
    return job_id


async def _two_sends(
    erx: Erx, session: AsyncSession, *, wants_next: bool
) -> tuple[str, uuid.UUID, uuid.UUID, RunningJob, int]:
    """Two queued prescriptions on a queue of their own: the first's send job held by a
    worker that wants (or not) its next job, the second's waiting. (queue, first, second,
    the first's running job, the second's job id.)"""
    queue_name = _queue_name()
    first = await _queued(erx, session)
    second = await _queued(erx, session)
    running = await _held_send(erx, first, queue_name, wants_next=wants_next)
    next_id = await _waiting_send(erx, second, queue_name)
    return queue_name, first, second, running, next_id


async def test_the_record_hands_the_worker_its_next_job_with_its_preload(
    erx: Erx, session: AsyncSession
) -> None:
    queue_name, first, second, running, next_id = await _two_sends(erx, session, wants_next=True)

    with job_preloads.fetching():
        outcome = await send(
            erx.runtime, first, schedule_retry=RetryScheduler(), job=running
        )  # fmt: skip
        handed = running.handed_off
        assert handed is not None
        preloaded = job_preloads.take(next_id)

    assert outcome.result == "issued" and running.finished
    assert (handed.id, handed.task_kwargs) == (next_id, {"prescription_id": str(second)})
    assert await _jobs(erx, [running.job_id, next_id]) == [
        ("succeeded", running.worker_id),
        ("doing", running.worker_id),
    ]
    # The next send starts from the same row its own load would read.
    async with erx.runtime.queue_pool.connection() as connection:
        cursor = await connection.execute(send_graph.LOAD, {"prescription_id": second})
        assert preloaded is not None and tuple(preloaded) == tuple(await cursor.fetchone() or ())
    # And runs in two statements of its own, the next job handed on by the second.
    then = RunningJob(
        job_id=next_id,
        worker_id=running.worker_id,
        preloaded=preloaded,
        queues=[queue_name],
        wants_next=lambda: True,
    )
    with job_preloads.fetching():
        outcome, counts = await counted(
            erx, send(erx.runtime, second, schedule_retry=RetryScheduler(), job=then)
        )
    assert outcome.result == "issued" and then.finished and then.handed_off is None
    assert counts.statements - counts.pings == 2, counts.as_dict()  # claim and record


async def test_a_stopping_worker_is_handed_nothing(erx: Erx, session: AsyncSession) -> None:
    _queue, first, _second, running, next_id = await _two_sends(erx, session, wants_next=False)

    with job_preloads.fetching():
        outcome = await send(erx.runtime, first, schedule_retry=RetryScheduler(), job=running)

    assert outcome.result == "issued" and running.finished
    assert running.handed_off is None
    assert await _jobs(erx, [next_id]) == [("todo", None)]


async def test_a_hand_off_that_got_no_answer_restarts_the_worker(
    erx: Erx, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement may have committed and taken a job nobody will start: the worker is
    told, so it stops and the stalled-job retrier puts such a job back."""
    prescription_id = await _queued(erx, session)
    running = await _held_send(erx, prescription_id, _queue_name(), wants_next=True)
    lost: list[str] = []
    running.hand_off_lost = lost.append
    # The connection is cut while the record runs: no answer, whatever was committed.
    monkeypatch.setattr(
        common_record,
        "_record_statement",
        lambda _hand_off: NativeStatement.of(
            "SELECT pg_terminate_backend(pg_backend_pid()) WHERE %(hand_off)s"
        ),
    )

    with job_preloads.fetching(), pytest.raises(Exception) as raised:
        await send(erx.runtime, prescription_id, schedule_retry=RetryScheduler(), job=running)

    assert lost, raised.value
    assert "database" in lost[0] or "connection" in lost[0], lost


async def test_a_worker_runs_handed_off_jobs_in_the_slot_that_took_them(
    erx: Erx, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six sends through a worker with two slots: one fetch takes two, each record hands on
    the next, and the slots come back whole once the queue is empty."""
    queue_name = _queue_name()
    prescriptions = [await _queued(erx, session) for _ in range(6)]
    job_ids = [await _waiting_send(erx, p, queue_name) for p in prescriptions]
    fetches: list[int] = []
    fetch_jobs = job_preloads.PreloadingJobManager.fetch_jobs

    async def counting(self: Any, queues: Any, worker_id: int, slots: int) -> Any:
        fetches.append(slots)
        return await fetch_jobs(self, queues, worker_id, slots)

    monkeypatch.setattr(job_preloads.PreloadingJobManager, "fetch_jobs", counting)
    worker = job_worker._Worker(
        queue, queues=[queue_name], concurrency=2, wait=False, install_signal_handlers=False
    )

    await worker.run()

    async with erx.runtime.engine.connect() as connection:
        issued = await connection.scalar(
            text("SELECT count(*) FROM prescriptions WHERE id = ANY(:ids) AND status = 'issued'"),
            {"ids": prescriptions},
        )
    assert issued == 6
    assert {status for status, _worker in await _jobs(erx, job_ids)} == {"succeeded"}
    # The first fetch filled both slots; the records handed on the other four; what is
    # left is the fetch that found the queue empty.
    assert fetches[0] == 2 and len(fetches) <= 3, fetches
    assert worker._job_semaphore._value == 2  # every slot given back once


async def test_a_job_handed_off_as_the_worker_stops_still_runs_before_it_stops(
    erx: Erx, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop comes while the record that takes the next job is in flight: that job is
    ``doing`` under this worker, so it runs in the slot, and the shutdown waits for it."""
    queue_name = _queue_name()
    prescriptions = [await _queued(erx, session) for _ in range(2)]
    job_ids = [await _waiting_send(erx, p, queue_name) for p in prescriptions]
    worker = job_worker._Worker(
        queue, queues=[queue_name], concurrency=1, install_signal_handlers=False
    )
    execute = NativeStatement.execute
    stopped: list[bool] = []

    async def stop_first(self: NativeStatement, connection: Any, values: Any) -> Any:
        if not stopped and values["hand_off"]:
            stopped.append(True)
            worker.stop()  # type: ignore[no-untyped-call]
        return await execute(self, connection, values)

    monkeypatch.setattr(NativeStatement, "execute", stop_first)

    await asyncio.wait_for(worker.run(), timeout=60)

    assert stopped
    assert [status for status, _worker in await _jobs(erx, job_ids)] == ["succeeded"] * 2
    async with erx.runtime.engine.connect() as connection:
        issued = await connection.scalar(
            text("SELECT count(*) FROM prescriptions WHERE id = ANY(:ids) AND status = 'issued'"),
            {"ids": prescriptions},
        )
    assert issued == 2
