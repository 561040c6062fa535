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
import time
from typing import TYPE_CHECKING, Any

import structlog
from procrastinate import job_context as procrastinate_job_context
from procrastinate import jobs as procrastinate_jobs
from procrastinate import utils as procrastinate_utils
from procrastinate import worker as procrastinate_worker

from rxroute import job_preloads
from rxroute.db.engine import outage_reason
from rxroute.job_running import RunningJob, run_as, running_job
from rxroute.jobs import queue

if TYPE_CHECKING:
    from rxroute.config import Settings

log = structlog.get_logger(__name__)


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

    @property
    def _hands_off(self) -> bool:
        """Whether this worker fetches in batches and takes jobs handed off to it: with
        rxroute's job manager, which procrastinate's own worker in some tests goes without."""
        return isinstance(self.app.job_manager, job_preloads.PreloadingJobManager)

    async def run(self) -> None:
        # Every fetch of this worker preloads (the loop and the job tasks inherit the scope).
        with job_preloads.fetching():
            await super().run()  # type: ignore[no-untyped-call]

    async def _fetch_and_process_jobs(self) -> None:
        """procrastinate's fetch loop, but one fetch takes a job for every free slot.

        procrastinate fetches one job per statement and waits for each fetch before the
        next: with short jobs (a send is a claim, a call and a record), a worker at any
        concurrency starts at most one job per fetch round trip, and its slots sit idle
        while PostgreSQL answers. Here a fetch takes every slot free at that moment
        (:meth:`rxroute.job_preloads.PreloadingJobManager.fetch_jobs`: procrastinate's own
        fetch function, called once per slot in one statement), so the slots that freed up
        during one fetch are filled by the next. Jobs are started as procrastinate starts
        them, and every job fetched is started, even when a stop comes during the fetch:
        it is ``doing`` under this worker, and the shutdown waits for it.
        """
        manager = self.app.job_manager
        if not isinstance(manager, job_preloads.PreloadingJobManager):
            await super()._fetch_and_process_jobs()  # type: ignore[no-untyped-call]
            return
        assert self.worker_id is not None
        semaphore = self._job_semaphore
        while not self._stop_event.is_set():
            acquired = asyncio.create_task(semaphore.acquire())
            # Returns once either is done, the other cancelled: without a stop, the slot.
            await procrastinate_utils.wait_any(acquired, self._stop_event.wait())
            if self._stop_event.is_set():
                if acquired.done() and not acquired.cancelled():
                    semaphore.release()  # both came at once: the slot goes back
                break
            slots = 1
            while not semaphore.locked():  # the other free slots: taken without waiting
                await semaphore.acquire()
                slots += 1
            # Cleared before the fetch, not after it (as procrastinate does): a job deferred
            # while the fetch runs, which it may not see, leaves the event set, so the wait
            # after a short fetch ends at once instead of at the next poll.
            self._new_job_event.clear()
            jobs: list[procrastinate_jobs.Job] = []
            try:
                jobs = await manager.fetch_jobs(self.queues, self.worker_id, slots)
            finally:
                for _unused in range(slots - len(jobs)):
                    semaphore.release()
            for job in jobs:
                self._start_job(job)
            if len(jobs) < slots:
                break  # the queue is empty for now: wait for a notification or the poll

    def _context_for(self, job: procrastinate_jobs.Job) -> procrastinate_job_context.JobContext:
        """The context procrastinate's loop gives a job it starts."""
        job_id = job.id
        return procrastinate_job_context.JobContext(
            app=self.app,
            worker_name=self.worker_name,
            worker_queues=self.queues,
            additional_context=self.additional_context.copy() if self.additional_context else {},
            job=job,
            abort_reason=lambda: self._job_ids_to_abort.get(job_id) if job_id else None,
            start_timestamp=time.time(),
        )

    @staticmethod
    def _task_name(job: procrastinate_jobs.Job) -> str:
        return f"process job {job.task_name}[{job.id}]"

    def _start_job(self, job: procrastinate_jobs.Job) -> None:
        """Run a fetched job in a task of its own, holding a slot until it ends (as
        procrastinate's loop does)."""
        context = self._context_for(job)
        task = asyncio.create_task(self._process_job(context), name=self._task_name(job))
        self._running_jobs[task] = context

        def on_job_complete(done: asyncio.Task[None]) -> None:
            del self._running_jobs[done]
            self._job_semaphore.release()

        task.add_done_callback(on_job_complete)

    async def _process_job(self, context: Any) -> None:
        """Run a job, then any job its last statement took for this worker, in one task.

        A job handed off (:class:`rxroute.job_preloads.HandOff`) runs in the same task and
        slot as the job that took it: the slot never looks free to the fetch loop, and the
        shutdown, which waits for the tasks running when it starts, waits for it too.
        """
        while True:
            job = context.job
            running = None
            if job.id is not None and self.worker_id is not None:
                hands_off = self._hands_off
                running = RunningJob(
                    job_id=job.id,
                    worker_id=self.worker_id,
                    delete_when_succeeded=self.delete_jobs
                    != procrastinate_jobs.DeleteJobCondition.NEVER,
                    preloaded=job_preloads.take(job.id),
                    queues=list(self.queues) if self.queues is not None else None,
                    wants_next=(lambda: not self._stop_event.is_set()) if hands_off else None,
                    hand_off_lost=self._hand_off_lost if hands_off else None,
                )
            # The job runs in a task of its own: the variable is this job's alone, and the
            # outcome's task (created inside) sees the same object.
            run_as(running)
            try:
                await super()._process_job(context)
            except BaseException:
                if running is not None and running.handed_off is not None:
                    self._hand_off_lost("the job that took the next one did not end cleanly")
                raise
            if running is None or running.handed_off is None:
                return
            context = self._context_for(running.handed_off)
            this_task = asyncio.current_task()
            assert this_task is not None
            self._running_jobs[this_task] = context  # what aborts and the shutdown look up
            this_task.set_name(self._task_name(running.handed_off))

    def _hand_off_lost(self, reason: str) -> None:
        """A statement that may have taken a job failed unanswered: restart this worker.

        A job it took would be ``doing`` under a worker that never runs it and is alive, so
        never stalled. Stopping unregisters this worker (or lets its heartbeat age): the
        stalled-job retrier then puts such a job back, as after any outage.
        """
        log.warning("job_hand_off_lost", reason=reason)
        self.stopped_for = f"a statement that hands off jobs got no answer: {reason}"
        self.stop()  # type: ignore[no-untyped-call]

    async def _persist_job_status(self, *args: Any, **kwargs: Any) -> None:
        job = kwargs.get("job")
        running = running_job()
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


def import_tasks() -> None:
    """Import every task module, so the queue knows every task; importing again is free."""
    queue.perform_import_paths()  # type: ignore[no-untyped-call]


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

    import_tasks()
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
