"""The worker's fetch reads what a send job starts with (issue 13, rxroute.job_preloads).

The fetch of a ``send_prescription`` job returns, with the job, the row the send's common
path would have loaded by itself: the same values as :data:`send_graph.LOAD` reads. The
send then claims and records in two statements of its own instead of three. A job of any
other task gets no preload, even when its arguments carry a ``prescription_id`` that is not
a UUID; and a fetch outside rxroute's worker (procrastinate's own worker, in some tests) is
procrastinate's plain fetch. tests/deliveries/test_scale_out.py runs the whole path with
real worker processes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from procrastinate.jobs import Job
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import rxroute.prescriptions.tasks  # noqa: F401 (registers the send's preload)
from rxroute import job_preloads
from rxroute.deliveries import common_path, send_graph
from rxroute.deliveries.claims import Claimed
from rxroute.deliveries.sending import RetryScheduler, send
from rxroute.job_running import RunningJob
from rxroute.jobs import queue
from tests.deliveries.test_send_budget import _queued, counted
from tests.deliveries.test_send_finishes_its_job import insert_job
from tests.erx_sandbox import Erx, queue_for_erx
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.factories import make_patient, make_pharmacy, make_prescriber, make_prescription


async def _fetched(
    erx: Erx, task_name: str, args: dict[str, Any], *, in_our_worker: bool = True
) -> tuple[Job, int, Sequence[Any] | None]:
    """A job waiting on a queue of its own (other tests' jobs never interfere), fetched as
    rxroute's worker fetches (or as procrastinate's own): the job, the worker's id and the
    row preloaded for it."""
    queue_name = f"preload-{uuid.uuid4().hex[:12]}"
    job_id, worker_id = await insert_job(
        erx, task_name, args, queue_name=queue_name, lock=f"test:{uuid.uuid4()}", held=False
    )
    with job_preloads.fetching() if in_our_worker else contextlib.nullcontext():
        job = await queue.job_manager.fetch_job(queues=[queue_name], worker_id=worker_id)
        assert job is not None and job.id == job_id
        preloaded = job_preloads.take(job_id)
        assert job_preloads.take(job_id) is None  # handed out once
    return job, worker_id, preloaded


async def _send_job_fetched(
    erx: Erx, session: AsyncSession, *, in_our_worker: bool = True
) -> tuple[uuid.UUID, Job, int, Sequence[Any] | None]:
    """A prescription queued for Region B with its send job, and that job fetched:
    the prescription's id, then what :func:`_fetched` gives."""
    prescription_id = await _queued(erx, session)
    job, worker_id, preloaded = await _fetched(
        erx,
        "send_prescription",
        {"prescription_id": str(prescription_id)},
        in_our_worker=in_our_worker,
    )
    return prescription_id, job, worker_id, preloaded


async def _loaded(erx: Erx, prescription_id: uuid.UUID) -> tuple[Any, ...]:
    async with erx.runtime.queue_pool.connection() as connection:
        cursor = await connection.execute(send_graph.LOAD, {"prescription_id": prescription_id})
        row = await cursor.fetchone()
    assert row is not None
    return tuple(row)


async def test_the_fetch_of_a_send_job_reads_its_send_graph(
    erx: Erx, session: AsyncSession
) -> None:
    prescription_id, job, worker_id, preloaded = await _send_job_fetched(erx, session)

    # The job is taken as procrastinate's own fetch takes it...
    assert (job.task_name, job.task_kwargs, job.worker_id) == (
        "send_prescription",
        {"prescription_id": str(prescription_id)},
        worker_id,
    )
    async with erx.runtime.engine.connect() as connection:
        status = await connection.scalar(
            text("SELECT status FROM procrastinate_jobs WHERE id = :id"), {"id": job.id}
        )
    assert status == "doing"
    # ...and the preload is exactly what the send's own load reads.
    assert preloaded is not None
    assert tuple(preloaded) == await _loaded(erx, prescription_id)


async def test_a_send_with_its_graph_preloaded_issues_in_two_statements(
    erx: Erx, session: AsyncSession
) -> None:
    prescription_id, fetched, worker_id, preloaded = await _send_job_fetched(erx, session)
    assert fetched.id is not None and preloaded is not None
    job = RunningJob(job_id=fetched.id, worker_id=worker_id, preloaded=preloaded)

    outcome, counts = await counted(
        erx, send(erx.runtime, prescription_id, schedule_retry=RetryScheduler(), job=job)
    )

    assert outcome.result == "issued"
    assert job.finished
    # The claim and the record: the load came with the job (test_send_budget: 3 without).
    assert counts.statements - counts.pings == 2, counts.as_dict()
    assert counts.transactions == 2, counts.as_dict()


async def test_a_preload_older_than_its_job_never_decides_against_sending(
    erx: Erx, session: AsyncSession
) -> None:
    """The fetch's SELECT reads from a snapshot taken before procrastinate's fetch function
    took the job, so it can predate the transaction that queued the delivery with the job.
    Such a row would say "nothing to send"; the claim reads again instead of believing it."""
    patient = await make_patient(session)
    prescriber = await make_prescriber(session, erx.runtime.secret_box)
    prescription = await make_prescription(session, patient, prescriber)
    pharmacy = await make_pharmacy(session, "B", platform_contact_id=5002)
    await session.commit()
    before_the_job = await _loaded(erx, prescription.id)  # a draft, no delivery yet
    await queue_for_erx(session, prescription.id, pharmacy)
    await session.commit()

    claimed = await common_path.claim(erx.runtime, prescription.id, preloaded=before_the_job)

    assert isinstance(claimed, Claimed), claimed
    async with erx.runtime.engine.connect() as connection:
        status = await connection.scalar(
            text("SELECT status FROM prescriptions WHERE id = :id"), {"id": prescription.id}
        )
    assert status == "sending"


async def test_another_tasks_job_gets_no_preload_whatever_its_arguments(erx: Erx) -> None:
    # Not a UUID: the preload's cast must never see another task's arguments.
    _job, _worker, preloaded = await _fetched(
        erx, "deliver_event_stream", {"prescription_id": "not-a-uuid"}
    )
    assert preloaded is None


async def test_a_send_job_whose_prescription_is_gone_gets_no_preload(erx: Erx) -> None:
    _job, _worker, preloaded = await _fetched(
        erx, "send_prescription", {"prescription_id": str(uuid.uuid4())}
    )
    # The send then loads by itself and finds nothing, as before.
    assert preloaded is None


async def test_outside_our_worker_the_fetch_is_procrastinates_own(
    erx: Erx, session: AsyncSession
) -> None:
    _prescription, _job, _worker, preloaded = await _send_job_fetched(
        erx, session, in_our_worker=False
    )
    assert preloaded is None


async def test_an_empty_queue_fetches_nothing(erx: Erx) -> None:
    async with erx.runtime.engine.begin() as connection:
        worker_id = await connection.scalar(text("SELECT procrastinate_register_worker_v1()"))
    with job_preloads.fetching():
        job = await queue.job_manager.fetch_job(
            queues=[f"empty-{uuid.uuid4().hex[:12]}"], worker_id=int(worker_id)
        )
    assert job is None


@pytest.mark.parametrize(
    ("task_name", "argument", "argument_type"),
    [("send'; DROP TABLE x; --", "id", "uuid"), ("send", "id'", "uuid"), ("send", "id", "uuid)")],
)
def test_a_preload_takes_plain_names_only(
    task_name: str, argument: str, argument_type: str
) -> None:
    with pytest.raises(ValueError, match="not a plain name"):
        job_preloads.Preload(
            task_name=task_name,
            argument=argument,
            argument_type=argument_type,
            select=send_graph.select_for,
            width=send_graph.WIDTH,
        )


def test_the_send_job_is_preloaded() -> None:
    statement, preloads = job_preloads._fetch_statement(1)
    assert [p.task_name for p in preloads] == ["send_prescription"]
    assert "procrastinate_fetch_job_v2" in statement
