"""rxroute's worker: procrastinate's, supervised, and lean on the send path.

The worker outlives the database: procrastinate's own worker stops (it raises, or a side task
such as the LISTEN connection or the heartbeat fails and it stops itself) as soon as one query
meets a dead connection. :func:`run_worker` wraps it in a loop that starts a fresh worker
after such an outage, with backoff, and logs one line per restart.

Two things make a send job cheaper here than under procrastinate's own worker: its fetch
reads the send's graph with the job (:mod:`rxroute.job_preloads`), and its record statement
finishes the job (:class:`RunningJob`), so the worker sends no finish of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from procrastinate import jobs as procrastinate_jobs
from procrastinate import utils as procrastinate_utils
from procrastinate import worker as procrastinate_worker

from rxroute import job_preloads
from rxroute.db.engine import outage_reason
from rxroute.jobs import queue

if TYPE_CHECKING:
    from rxroute.config import Settings

log = structlog.get_logger(__name__)


# --- a job finished by its own statement -------------------------------------------------


@dataclass
class RunningJob:
    """The queue job a task body runs as, so its last statement can finish it too.

    The send job's record (:mod:`rxroute.deliveries.common_path`) marks its own job
    ``succeeded`` in the statement that records the delivery: the job's outcome is then
    written with the state it acts on, and the worker skips the separate round trip and
    transaction procrastinate would spend on it (:meth:`_Worker._persist_job_status`).
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


_RUNNING_JOB: ContextVar[RunningJob | None] = ContextVar("rxroute_running_job", default=None)


def running_job() -> RunningJob | None:
    """The job the calling task body runs as, inside a worker; None anywhere else."""
    return _RUNNING_JOB.get()


# --- the supervised worker ----------------------------------------------------------------

#: Restart delays: doubling from the first to the cap, each with jitter so that many workers
#: cut off together do not all reconnect in the same instant.
RESTART_DELAY_FIRST_SECONDS = 0.5
RESTART_DELAY_CAP_SECONDS = 30.0
#: A worker that ran this long before stopping starts the backoff from the beginning again.
RESTART_HEALTHY_AFTER_SECONDS = 60.0
#: Seconds between polls for new jobs when no notification arrives.
FETCH_POLLING_SECONDS = 2.0


def shutdown_grace_seconds(settings: Settings) -> float:
    """How long a stopping worker waits for its running jobs before cancelling them.

    procrastinate stops the heartbeat first, so the jobs must be over (or cancelled and
    recorded) before their last heartbeat is old enough to count as stalled; otherwise
    another worker would start them again while they still run here.
    """
    return settings.stalled_job_seconds - 2 * settings.worker_heartbeat_seconds


def restart_delay(failures: int) -> float:
    """Seconds to wait before the ``failures``-th restart in a row (0-based)."""
    ceiling = min(RESTART_DELAY_CAP_SECONDS, RESTART_DELAY_FIRST_SECONDS * 2.0**failures)
    return ceiling * random.uniform(0.5, 1.0)


class _QuietOutages(logging.Filter):
    """procrastinate logs a database outage with a full traceback; keep one line instead.

    A side task's failure is logged twice (when it stops the worker, and again as the worker
    shuts down): both records are dropped, the supervisor logs the restart with the reason
    kept here. Any other record about an outage (a job that failed on a dead connection)
    keeps its line, with the reason in place of the traceback.
    """

    def __init__(self) -> None:
        super().__init__()
        self.side_task_outage: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        reason = outage_reason(error) if error is not None else None
        if reason is None:
            return True
        action = str(getattr(record, "action", ""))
        if action == "side_task_failed":
            self.side_task_outage = f"{getattr(record, 'task_name', 'a side task')}: {reason}"
            return False
        if record.name == procrastinate_utils.logger.name and action.endswith("_error"):
            return False
        record.msg = f"{record.getMessage()} (database unavailable: {reason})"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True

    def take_side_task_outage(self) -> str | None:
        reason, self.side_task_outage = self.side_task_outage, None
        return reason


_QUIET_OUTAGES = _QuietOutages()


def _quiet_procrastinate_outages() -> None:
    # A logger's filters see only the records it creates itself.
    worker_logger = procrastinate_worker.logger.name
    for name in (worker_logger, f"{worker_logger}.worker", procrastinate_utils.logger.name):
        logger = logging.getLogger(name)
        if _QUIET_OUTAGES not in logger.filters:
            logger.addFilter(_QUIET_OUTAGES)


class _Worker(procrastinate_worker.Worker):
    """procrastinate's worker, which stops when it cannot record a job's outcome.

    procrastinate lets that error end the job's task unseen: the job would stay ``doing``
    under a live worker, never stalled, never retried. Stopping unregisters this worker (or
    lets its heartbeat age), so the retrier puts the job back and it runs again.
    """

    #: Why this worker stopped itself, when it did.
    stopped_for: str | None = None

    async def run(self) -> None:
        # Every fetch of this worker preloads (the loop and the job tasks inherit the scope).
        with job_preloads.fetching():
            await super().run()  # type: ignore[no-untyped-call]

    async def _process_job(self, context: Any) -> None:
        job = context.job
        running = None
        if job.id is not None and self.worker_id is not None:
            running = RunningJob(
                job_id=job.id,
                worker_id=self.worker_id,
                delete_when_succeeded=self.delete_jobs
                != procrastinate_jobs.DeleteJobCondition.NEVER,
                preloaded=job_preloads.take(job.id),
            )
        # The job runs in a task of its own: the variable is this job's alone, and the
        # outcome's task (created inside) sees the same object.
        _RUNNING_JOB.set(running)
        await super()._process_job(context)

    async def _persist_job_status(self, *args: Any, **kwargs: Any) -> None:
        job = kwargs.get("job")
        running = _RUNNING_JOB.get()
        if running is not None and running.finished and getattr(job, "id", None) == running.job_id:
            # Already ``succeeded``, in the statement that recorded the job's work.
            status = kwargs.get("status")
            if status is not procrastinate_jobs.Status.SUCCEEDED:
                log.warning(
                    "job_finished_before_its_end",
                    job_id=running.job_id,
                    task=getattr(job, "task_name", None),
                    status=getattr(status, "value", status),
                )
            self._job_ids_to_abort.pop(running.job_id, None)
            return
        try:
            await super()._persist_job_status(*args, **kwargs)
        except Exception as exc:
            reason = outage_reason(exc)
            if reason is None:
                raise
            log.warning(
                "job_outcome_not_recorded",
                job_id=getattr(job, "id", None),
                task=getattr(job, "task_name", None),
                reason=reason,
            )
            self.stopped_for = f"a job's outcome could not be recorded: {reason}"
            self.stop()  # type: ignore[no-untyped-call]


async def _replace_dead_connections() -> None:
    """After an outage, test the queue pool's idle connections and replace the dead ones.

    The pool does not ping at checkout (``RXROUTE_DB_POOL_PRE_PING``), and it keeps every
    connection open: without this, each connection the server dropped would stop one more
    fresh worker, one backoff after another. (SQLAlchemy's pool needs nothing: a disconnect
    seen on one connection makes it replace them all.)
    """
    pool = queue.connector.pool  # type: ignore[attr-defined]
    await pool.check()


def _cancel_requested() -> bool:
    """Whether someone asked to cancel this task, even if the CancelledError was lost."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def run_worker(
    settings: Settings, concurrency: int, *, install_signal_handlers: bool = True
) -> None:
    """Run jobs until asked to stop (SIGINT/SIGTERM, or cancellation), surviving outages.

    Each round runs one procrastinate worker. When it stops on its own, or raises because
    the database is out of reach, a fresh one starts after :func:`restart_delay`; any other
    error is a bug and propagates. Jobs a cut-off worker was running are left ``doing`` and
    retried as stalled (``retry_stalled_jobs``), which every job tolerates. Cancelled, it
    stops and never restarts, even when the worker's shutdown ends in an outage.
    """
    from procrastinate import signals

    from rxroute.maintenance.tasks import schedule_stalled_job_retrier

    queue.perform_import_paths()  # type: ignore[no-untyped-call]
    schedule_stalled_job_retrier(settings)
    _quiet_procrastinate_outages()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    current: _Worker | None = None

    def request_stop() -> None:
        stopping.set()
        if current is not None:
            current.stop()  # type: ignore[no-untyped-call]

    on_signal = signals.on_stop(request_stop) if install_signal_handlers else None
    failures = 0
    with on_signal or contextlib.nullcontext():
        while not stopping.is_set():
            current = _Worker(
                queue,
                concurrency=concurrency,
                install_signal_handlers=False,
                shutdown_graceful_timeout=shutdown_grace_seconds(settings),
                fetch_job_polling_interval=FETCH_POLLING_SECONDS,
                update_heartbeat_interval=settings.worker_heartbeat_seconds,
                # Workers silent this long are pruned at start-up, and their jobs then count
                # as stalled: the same bound as the retrier's.
                stalled_worker_timeout=settings.stalled_job_seconds,
            )
            started = loop.time()
            try:
                await current.run()
                reason = (
                    current.stopped_for
                    or _QUIET_OUTAGES.take_side_task_outage()
                    or "the worker stopped itself"
                )
            except Exception as exc:
                if _cancel_requested():
                    # procrastinate's run() answers a cancel by awaiting its own shutdown,
                    # and an error met there (an outage, say) replaces the CancelledError.
                    # Cancelled means stop: never restart, whatever the worker ended with.
                    raise asyncio.CancelledError from exc
                found = outage_reason(exc)
                if found is None:
                    raise
                reason = found
            if stopping.is_set():
                break
            if loop.time() - started >= RESTART_HEALTHY_AFTER_SECONDS:
                failures = 0
            delay = restart_delay(failures)
            failures += 1
            log.warning(
                "worker_restarting",
                reason=reason,
                restart=failures,
                retry_in_seconds=round(delay, 2),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            if not stopping.is_set():
                await _replace_dead_connections()
