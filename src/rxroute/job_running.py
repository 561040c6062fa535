"""The queue job a task body runs as, as rxroute's worker tells it.

A task body's last statement can do the worker's work for it: finish the job it runs as
(the send's record does, with the delivery it records), and take the worker's next job,
which then runs in the same slot (the hand-off, :class:`rxroute.job_preloads.HandOff`). The
worker (:mod:`rxroute.job_worker`) sets a :class:`RunningJob` for each job it runs; anywhere
else (procrastinate's own worker, a test calling the task) there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from procrastinate import jobs as procrastinate_jobs


@dataclass
class RunningJob:
    """The queue job a task body runs as, so its last statement can finish it too.

    The send job's record (:mod:`rxroute.deliveries.common_path`) marks its own job
    ``succeeded`` in the statement that records the delivery: the job's outcome is then
    written with the state it acts on, and the worker skips the separate round trip and
    transaction procrastinate would spend on it
    (:meth:`rxroute.job_worker._Worker._persist_job_status`).
    """

    job_id: int
    worker_id: int
    #: What the worker's own finish would do with the job once it succeeded (its
    #: ``delete_jobs``): the statement does the same.
    delete_when_succeeded: bool = False
    #: Set once a statement has marked the job ``succeeded``; the worker then leaves it.
    finished: bool = False
    #: The row the fetch read for the job's task (:mod:`rxroute.job_preloads`), if any.
    preloaded: Sequence[Any] | None = None
    #: The worker's queues, for a statement that takes its next job (the hand-off).
    queues: list[str] | None = None
    #: Whether the worker wants its next job handed off now (not while it stops); None:
    #: never (procrastinate's own worker, or outside one).
    wants_next: Callable[[], bool] | None = None
    #: The job a statement of this job took for this worker, to run next in this job's slot.
    handed_off: procrastinate_jobs.Job | None = None
    #: Told when a statement that may have taken a job failed before its answer came:
    #: a job taken but never started would stay ``doing`` under this live worker.
    hand_off_lost: Callable[[str], None] | None = None

    def may_hand_off(self) -> bool:
        """Whether a statement this job ends with may take the worker's next job."""
        return self.wants_next is not None and self.wants_next()


_RUNNING_JOB: ContextVar[RunningJob | None] = ContextVar("rxroute_running_job", default=None)


def running_job() -> RunningJob | None:
    """The job the calling task body runs as, inside a worker; None anywhere else."""
    return _RUNNING_JOB.get()


def run_as(job: RunningJob | None) -> None:
    """Make ``job`` the one the current task (and the tasks it starts) runs as."""
    _RUNNING_JOB.set(job)
