"""Reads a job starts with, done by the statement that fetches the job.

procrastinate's worker fetches a job in one statement, and the send job's first act was
another: reading its prescription and everything the channel needs. Two round trips in a
row, each a wake-up of the worker and of a PostgreSQL backend, on a worker that is bound by
CPU (``bench/bench_send.py`` prints where a send's CPU goes). A task may register a
:class:`Preload`: a SELECT keyed by one of the fetched job's arguments, which the fetch runs
as a ``LEFT JOIN LATERAL`` on procrastinate's own ``procrastinate_fetch_job_v2``. The task
finds the row with :func:`take` (through :class:`rxroute.job_running.RunningJob`) and skips its
own read; a job of any other task costs the fetch nothing but an empty lateral join.

A preload is only a read, from the snapshot of the statement that fetched the job. That
snapshot is taken before procrastinate's fetch function (volatile, with snapshots of its
own) takes the job, so it may predate the transaction that queued the job with the state
it acts on. A preload may therefore only lead the task to a write whose compare-and-set
proves it current (the send's claim re-checks every value it relies on); any other
conclusion is drawn again from a fresh read (:func:`rxroute.deliveries.common_path.claim`).

Two more round trips are saved the same way. One fetch takes a job for every free slot
(:meth:`PreloadingJobManager.fetch_jobs`), and a job's last statement may take its
worker's next job with its preload (:class:`HandOff`; the send's record does), which runs
in the slot it frees.

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
from procrastinate.sql import queries as procrastinate_queries

from rxroute.db.queue_statements import single_statements

#: The function procrastinate's ``fetch_job`` query calls, and our fetch calls too
#: (:data:`_CALL_FETCH`): the parse below checks that they are still the same.
_FETCH_FUNCTION = "procrastinate_fetch_job_v2"

#: procrastinate's own ``fetch_job`` query: ``SELECT <columns> FROM <the fetch function>(``.
_FETCH_QUERY_SHAPE = re.compile(
    rf"\s*SELECT\s+(?P<columns>[a-z_,\s]+?)\s+FROM\s+{_FETCH_FUNCTION}\(", re.IGNORECASE
)


def fetch_job_columns(query: str) -> tuple[str, ...]:
    """The columns procrastinate's ``fetch_job`` ``query`` returns, in its order.

    Read from procrastinate's own query rather than restated, so the rows our fetch builds
    (:data:`_CALL_FETCH`, which calls the same function) stay what ``Job.from_row`` reads
    after an upgrade. A query of another shape (a new fetch function, say) stops the import
    here, not a worker mid-job.
    """
    match = _FETCH_QUERY_SHAPE.match(query)
    if match is None:
        raise RuntimeError(
            "procrastinate's fetch_job query is no longer SELECT ... FROM "  # noqa: S608 (a message)
            f"{_FETCH_FUNCTION}(...); rxroute.job_preloads calls that function and "
            "must be updated with it"
        )
    return tuple(name.strip() for name in match.group("columns").split(","))


#: The columns procrastinate's own ``fetch_job`` query returns, in its order.
JOB_COLUMNS = fetch_job_columns(procrastinate_queries["fetch_job"])

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
#: Statements built for the preloads registered then: the fetch for each number of slots,
#: and the hand-off's pieces.
_STATEMENTS: dict[int, tuple[str, tuple[Preload, ...]]] = {}
_HAND_OFFS: dict[str, HandOff] = {}


def register(preload: Preload) -> None:
    """Let the worker's fetch read ``preload`` for every job of its task."""
    _REGISTRY[preload.task_name] = preload
    _STATEMENTS.clear()
    _HAND_OFFS.clear()


def _job_columns_and_joins() -> tuple[list[str], list[str], tuple[Preload, ...]]:
    """The select list of a fetched job (alias ``job``) and its preloads, and their joins."""
    preloads = tuple(_REGISTRY.values())
    columns = [f"job.{name}" for name in JOB_COLUMNS]
    joins = []
    for index, preload in enumerate(preloads):
        columns.append(f"preload_{index}.*")
        joins.append(
            f"LEFT JOIN LATERAL ({preload.select(preload.argument_sql())}) "
            f"AS preload_{index} ON true"
        )
    return columns, joins, preloads


#: procrastinate's fetch, called once per row of a FROM clause given after it. Each call (a
#: volatile function, each query in it with a snapshot of its own) sees the jobs the calls
#: and statements before it in the same statement took or finished, so it takes the next
#: job and respects the job locks held. MATERIALIZED: what reads the result never calls the
#: function again. A call that finds nothing returns a row of NULLs.
_CALL_FETCH = (
    f"SELECT (fetched_job).* FROM (SELECT {_FETCH_FUNCTION}("  # noqa: S608 (our constant)
    "%(queues)s::varchar[], %(worker_id)s) AS fetched_job FROM {rows} OFFSET 0) AS calls"
)


def _fetch_statement(slots: int) -> tuple[str, tuple[Preload, ...]]:
    """The statement that fetches up to ``slots`` jobs, and the preloads it reads.

    The number of slots is written into the statement, not bound: with a parameter,
    PostgreSQL cannot know how many rows ``generate_series`` gives, costs its generic plan
    for a thousand calls, and so plans the prepared statement again for every fetch (nearly
    a millisecond of a backend's CPU each: ``pg_stat_statements`` with ``track_planning``).
    One statement per count (at most the worker's concurrency of them) keeps each on one
    generic plan.
    """
    if slots < 1:
        raise ValueError(f"slots must be at least 1, not {slots}")
    found = _STATEMENTS.get(slots)
    if found is None:
        columns, joins, preloads = _job_columns_and_joins()
        rows = f"generate_series(1, {int(slots)})"
        statement = " ".join(
            [
                f"WITH fetched AS MATERIALIZED ({_CALL_FETCH.format(rows=rows)})",
                "SELECT",
                ", ".join(columns),
                "FROM fetched AS job",
                *joins,
                "WHERE job.id IS NOT NULL",
            ]
        )
        found = _STATEMENTS[slots] = (statement, preloads)
    return found


@dataclass(frozen=True)
class HandOff:
    """The SQL with which a job's last statement also takes its worker's next job.

    A job that ends in one statement of its own (the send's record) frees its slot at that
    statement's commit; the worker would then spend a round trip fetching the next job.
    Taken by the same statement instead, the next job inherits the slot at once
    (:meth:`rxroute.job_worker._Worker._process_job`). Parameters: ``%(queues)s``,
    ``%(worker_id)s`` and ``%(hand_off)s`` (false: take nothing).
    """

    #: A CTE named ``next_job``, to follow the statement's other CTEs: it calls the fetch
    #: once ``after`` (a CTE that finishes the current job) gave its row, so the current
    #: job's lock is released before the fetch looks at locks.
    cte: str
    #: The next job's columns and its preload's, in :func:`jobs_from_rows`' order.
    columns: str
    #: What the statement's outer SELECT joins for them (one row at most; NULLs if none).
    joins: str
    preloads: tuple[Preload, ...]


def hand_off_sql(after: str) -> HandOff:
    """The :class:`HandOff` pieces, the fetch running after the CTE ``after``."""
    if not _NAME.match(after):
        raise ValueError(f"not a plain name: {after!r}")
    found = _HAND_OFFS.get(after)
    if found is None:
        columns, joins, preloads = _job_columns_and_joins()
        rows = f"{after} WHERE %(hand_off)s"
        found = _HAND_OFFS[after] = HandOff(
            cte=f"next_job AS MATERIALIZED ({_CALL_FETCH.format(rows=rows)})",
            columns=", ".join(columns),
            joins=" ".join(
                [
                    "LEFT JOIN (SELECT * FROM next_job WHERE id IS NOT NULL) AS job ON true",
                    *joins,
                ]
            ),
            preloads=preloads,
        )
    return found


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


def jobs_from_rows(
    rows: Iterable[Sequence[Any]], preloads: tuple[Preload, ...]
) -> list[procrastinate_jobs.Job]:
    """The jobs in rows of a fetch's columns (NULL columns: no job), their preloads kept for
    :func:`take`. Only inside :func:`fetching` (rxroute's worker)."""
    fetched = _FETCHED.get()
    if fetched is None:
        raise RuntimeError("preloaded jobs are for rxroute's worker, inside fetching()")
    jobs = []
    for row in rows:
        if row[0] is None:
            continue
        job = procrastinate_jobs.Job.from_row(dict(zip(JOB_COLUMNS, row, strict=False)))
        preloaded = _split(row, preloads, job.task_name)
        if preloaded is not None and job.id is not None:
            fetched[job.id] = preloaded
        jobs.append(job)
    return jobs


class PreloadingJobManager(procrastinate_manager.JobManager):
    """procrastinate's job manager, whose fetch also reads what the job's task starts with,
    and can take several jobs in one statement (:meth:`fetch_jobs`)."""

    async def fetch_job(
        self, queues: Iterable[str] | None, worker_id: int
    ) -> procrastinate_jobs.Job | None:
        if _FETCHED.get() is None:
            return await super().fetch_job(queues=queues, worker_id=worker_id)
        jobs = await self.fetch_jobs(queues, worker_id, 1)
        return jobs[0] if jobs else None

    async def fetch_jobs(
        self, queues: Iterable[str] | None, worker_id: int, slots: int
    ) -> list[procrastinate_jobs.Job]:
        """Up to ``slots`` jobs for this worker, in the order procrastinate would hand them
        out one by one, with their preloads, in one statement.

        procrastinate's worker fetches one job per statement, and fetches one at a time: a
        worker whose jobs are short waits on the fetch's round trip between each start
        (``bench/bench_send.py``). Taking every free slot's job at once spends one round
        trip on all of them. Only inside :func:`fetching` (rxroute's worker).
        """
        if _FETCHED.get() is None:
            raise RuntimeError("fetch_jobs is for rxroute's worker, inside fetching()")
        statement, preloads = _fetch_statement(slots)
        pool = self.connector.pool  # type: ignore[attr-defined]
        async with single_statements(pool) as connection:
            cursor = await connection.execute(
                statement,
                {
                    "queues": list(queues) if queues is not None else None,
                    "worker_id": worker_id,
                },
            )
            rows = await cursor.fetchall()
        return jobs_from_rows(rows, preloads)
