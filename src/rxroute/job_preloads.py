"""Reads a job starts with, done by the statement that fetches the job.

procrastinate's worker fetches a job in one statement, and the send job's first act was
another: reading its prescription and everything the channel needs. Two round trips in a
row, each a wake-up of the worker and of a PostgreSQL backend, on a worker that is bound by
CPU (``bench/bench_send.py`` prints where a send's CPU goes). A task may register a
:class:`Preload`: a SELECT keyed by one of the fetched job's arguments, which the fetch runs
as a ``LEFT JOIN LATERAL`` on procrastinate's own ``procrastinate_fetch_job_v2``. The task
finds the row with :func:`take` (through :class:`rxroute.job_worker.RunningJob`) and skips its
own read; a job of any other task costs the fetch nothing but an empty lateral join.

A preload is only a read, from the fetch's snapshot. A job is deferred in the transaction
that commits the state it acts on, so the snapshot that sees the job sees that state too;
anything that moved after it is caught where it always was, by the compare-and-set of the
task's first write (the send's claim re-checks every value it relies on).

Preloading is on only inside rxroute's own worker (:meth:`rxroute.job_worker._Worker.run` opens a
:func:`fetching` scope); any other fetch through :data:`rxroute.jobs.queue` (procrastinate's
own worker, as some tests run it) is procrastinate's plain fetch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from procrastinate import jobs as procrastinate_jobs
from procrastinate import manager as procrastinate_manager

from rxroute.db.queue_statements import single_statements

#: The columns procrastinate's own ``fetch_job`` query returns, in its order.
JOB_COLUMNS = (
    "id",
    "status",
    "task_name",
    "priority",
    "lock",
    "queueing_lock",
    "args",
    "scheduled_at",
    "queue_name",
    "attempts",
    "worker_id",
)

_NAME = re.compile(r"^[a-z_][a-z0-9_.]*$")


@dataclass(frozen=True)
class Preload:
    """A read a task starts with, keyed by one argument of its job."""

    task_name: str
    #: The job argument the read is keyed by, and its SQL type.
    argument: str
    argument_type: str
    #: The SELECT, given the SQL expression of that argument (NULL for any other task's job).
    select: Callable[[str], str]
    #: How many columns the SELECT returns.
    width: int

    def __post_init__(self) -> None:
        for name in (self.task_name, self.argument, self.argument_type):
            # Formatted into SQL: names of ours, never input.
            if not _NAME.match(name):
                raise ValueError(f"not a plain name: {name!r}")

    def argument_sql(self) -> str:
        return (
            f"CAST(CASE WHEN job.task_name = '{self.task_name}' "
            f"THEN job.args->>'{self.argument}' END AS {self.argument_type})"
        )


_REGISTRY: dict[str, Preload] = {}
_STATEMENT: tuple[str, tuple[Preload, ...]] | None = None


def register(preload: Preload) -> None:
    """Let the worker's fetch read ``preload`` for every job of its task."""
    global _STATEMENT
    _REGISTRY[preload.task_name] = preload
    _STATEMENT = None


def _fetch_statement() -> tuple[str, tuple[Preload, ...]]:
    global _STATEMENT
    if _STATEMENT is None:
        preloads = tuple(_REGISTRY.values())
        columns = [f"job.{name}" for name in JOB_COLUMNS]
        joins = []
        for index, preload in enumerate(preloads):
            columns.append(f"preload_{index}.*")
            joins.append(
                f"LEFT JOIN LATERAL ({preload.select(preload.argument_sql())}) "
                f"AS preload_{index} ON true"
            )
        statement = " ".join(
            [
                "SELECT",
                ", ".join(columns),
                "FROM procrastinate_fetch_job_v2(%(queues)s::varchar[], %(worker_id)s) AS job",
                *joins,
            ]
        )
        _STATEMENT = (statement, preloads)
    return _STATEMENT


def _split(
    row: Sequence[Any], preloads: tuple[Preload, ...], task_name: str
) -> Sequence[Any] | None:
    """The preload of the job's own task in ``row``, or None (none, or nothing found)."""
    start = len(JOB_COLUMNS)
    for preload in preloads:
        values = row[start : start + preload.width]
        start += preload.width
        if preload.task_name == task_name:
            # A LEFT JOIN that found nothing: every column NULL.
            return values if any(value is not None for value in values) else None
    return None


#: The preloads fetched for jobs not started yet, by job id; set only inside our worker.
_FETCHED: ContextVar[dict[int, Sequence[Any]] | None] = ContextVar(
    "rxroute_preloaded", default=None
)


@contextmanager
def fetching() -> Iterator[None]:
    """Preload for the fetches made in this context (and the tasks it starts)."""
    token = _FETCHED.set({})
    try:
        yield
    finally:
        _FETCHED.reset(token)


def take(job_id: int) -> Sequence[Any] | None:
    """The row preloaded for job ``job_id``, once; None when there is none."""
    fetched = _FETCHED.get()
    return None if fetched is None else fetched.pop(job_id, None)


class PreloadingJobManager(procrastinate_manager.JobManager):
    """procrastinate's job manager, whose fetch also reads what the job's task starts with."""

    async def fetch_job(
        self, queues: Iterable[str] | None, worker_id: int
    ) -> procrastinate_jobs.Job | None:
        fetched = _FETCHED.get()
        if fetched is None or not _REGISTRY:
            return await super().fetch_job(queues=queues, worker_id=worker_id)
        statement, preloads = _fetch_statement()
        pool = self.connector.pool  # type: ignore[attr-defined]
        async with single_statements(pool) as connection:
            cursor = await connection.execute(
                statement,
                {"queues": list(queues) if queues is not None else None, "worker_id": worker_id},
            )
            row = await cursor.fetchone()
        # procrastinate's function always returns a row: all NULL when no job was found.
        if row is None or row[0] is None:
            return None
        job = procrastinate_jobs.Job.from_row(dict(zip(JOB_COLUMNS, row, strict=False)))
        preloaded = _split(row, preloads, job.task_name)
        if preloaded is not None and job.id is not None:
            fetched[job.id] = preloaded
        return job
