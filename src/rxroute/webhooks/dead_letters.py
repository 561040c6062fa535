"""Dead letters: a webhook event whose processing failed its last attempt, and its reprocess.

The platform got its 200 when the event was stored, so it will never send it again: an
event whose processing keeps raising must not sit ``pending`` where nobody looks. On the
job's last attempt (decided by the task's own retry strategy, the same call procrastinate's
worker makes, so the policy lives only in the task's decorator) the event is marked
``failed`` with the error's type and the attempt count, in a transaction of its own: the
failing one was rolled back.

An event can also stay pending with no job left to run it (a worker killed on the last
attempt, a queue wiped); support therefore sees events pending for longer than
:data:`STALE_PENDING_AFTER` next to the failed ones, and may reprocess either: the event is
reset to pending, the request is counted with who asked and when, and the processing job is
deferred in the caller's transaction.

Messages are PHI-free: the exception's class, a SQLSTATE and counts, never the exception's
text (a database error quotes the statement's parameters, which come from the payload).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import structlog
from procrastinate import JobContext
from sqlalchemy import ColumnElement, and_, func, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rxroute.models import InboundWebhookEvent, Prescription, User, WebhookEventState
from rxroute.observability.metrics import DEAD_LETTERS
from rxroute.prescriptions.errors import Conflict, NotFound

log = structlog.get_logger(__name__)

#: A pending event older than this (since received or since support re-queued it) has
#: most likely lost its job: support sees it with the failed ones.
STALE_PENDING_AFTER = timedelta(minutes=10)
#: States whose event did not turn into history and may be reprocessed.
UNRESOLVED_STATES = (
    WebhookEventState.PENDING.value,
    WebhookEventState.FAILED.value,
    WebhookEventState.UNKNOWN_PRESCRIPTION.value,
    WebhookEventState.UNKNOWN_TYPE.value,
)
_ERROR_TYPE_LENGTH = 100


# --- the job's last attempt -------------------------------------------------------------


def is_last_attempt(context: JobContext, error: BaseException) -> bool:
    """Whether procrastinate will give up on the job after ``error``.

    Asks the task's retry strategy about the job as it is now (``job.attempts`` counts the
    earlier runs, 0 on the first; a ``RetryStrategy`` retries while it is below
    ``max_attempts``), exactly as the worker will a moment later.
    """
    return context.task.get_retry_exception(exception=error, job=context.job) is None


def attempt_number(context: JobContext) -> int:
    """This run's number, counting from 1 (``job.attempts`` counts the runs before it)."""
    return context.job.attempts + 1


def error_type(error: BaseException) -> str:
    return type(error).__name__[:_ERROR_TYPE_LENGTH]


def failure_message(error: BaseException, attempts: int) -> str:
    """What support reads: the class, a SQLSTATE for a database error, the attempt count."""
    cls = type(error)
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    code = f" (SQLSTATE {sqlstate})" if isinstance(sqlstate, str) and sqlstate.isalnum() else ""
    return (
        f"processing failed {attempts} time{'s' if attempts != 1 else ''}; the last attempt "
        f"raised {cls.__module__}.{cls.__qualname__}{code}"
    )


#: Another processing job for the same event that has yet to run (or is running).
_OTHER_JOB = text(
    "SELECT 1 FROM procrastinate_jobs WHERE task_name = 'process_webhook_event' "
    "AND status IN ('todo', 'doing') AND args->>'event_id' = :event_id AND id <> :job_id "
    "LIMIT 1"
)


async def mark_failed(
    sessionmaker: async_sessionmaker[AsyncSession],
    event_id: uuid.UUID,
    error: BaseException,
    *,
    attempts: int,
    job_id: int | None,
) -> bool:
    """Mark a still-pending event ``failed``, in its own transaction; False if it was not.

    Only a pending event moves, and only when no other job will process it: support may
    have re-queued it while this job was on its last attempt. The event's row lock is taken
    first (support's reprocess holds it while deferring its job), so the check that follows
    sees a reprocess that committed meanwhile.
    """
    async with sessionmaker() as session, session.begin():
        state = await session.scalar(
            select(InboundWebhookEvent.state)
            .where(InboundWebhookEvent.id == event_id)
            .with_for_update()
        )
        if state != WebhookEventState.PENDING.value:
            return False
        other_job = await session.scalar(
            _OTHER_JOB, {"event_id": str(event_id), "job_id": job_id if job_id is not None else -1}
        )
        if other_job is not None:
            log.info("webhook_dead_letter_left_to_newer_job", event_id=str(event_id))
            return False
        marked = await session.scalar(
            update(InboundWebhookEvent)
            .where(InboundWebhookEvent.id == event_id)
            .values(
                state=WebhookEventState.FAILED.value,
                error_type=error_type(error),
                error=failure_message(error, attempts),
                attempts=attempts,
                failed_at=func.now(),
            )
            .returning(InboundWebhookEvent.id)
        )
    return marked is not None


async def dead_letter_if_last(
    sessionmaker: async_sessionmaker[AsyncSession],
    context: JobContext,
    event_id: uuid.UUID,
    error: Exception,
) -> bool:
    """Called by the job with the error of a failed run; True if the event was dead-lettered.

    Not the last attempt: nothing (the event stays pending for the retry). If marking it
    fails too (the database is gone), the event stays pending and shows up as stale: that
    is logged here, and the caller re-raises the original error either way.
    """
    if not is_last_attempt(context, error):
        return False
    attempts = attempt_number(context)
    try:
        marked = await mark_failed(
            sessionmaker, event_id, error, attempts=attempts, job_id=context.job.id
        )
    except (SQLAlchemyError, OSError) as failure:
        log.error(
            "webhook_dead_letter_not_recorded",
            event_id=str(event_id),
            error_type=error_type(error),
            dead_letter_error_type=error_type(failure),
            attempts=attempts,
        )
        return False
    if marked:
        DEAD_LETTERS.inc()
    log.error(
        "webhook_dead_letter",
        event_id=str(event_id),
        error_type=error_type(error),
        attempts=attempts,
        marked=marked,
    )
    return marked


# --- what support sees ------------------------------------------------------------------


async def database_now(session: AsyncSession) -> datetime:
    """The database's clock: event times are the database's, so "stale" is measured on it."""
    now = await session.scalar(select(func.now()))
    assert isinstance(now, datetime)
    return now


def stale_clause(now: datetime) -> ColumnElement[bool]:
    return and_(
        InboundWebhookEvent.state == WebhookEventState.PENDING.value,
        InboundWebhookEvent.pending_since < now - STALE_PENDING_AFTER,
    )


def is_stale(event: InboundWebhookEvent, now: datetime) -> bool:
    """The same rule as :func:`stale_clause`, for an event already loaded."""
    return (
        event.state == WebhookEventState.PENDING.value
        and event.pending_since < now - STALE_PENDING_AFTER
    )


def reprocess_refusal(event: InboundWebhookEvent, now: datetime) -> str | None:
    """Why support may not reprocess ``event`` now, or None when it may."""
    if event.state == WebhookEventState.PROCESSED.value:
        return (
            "this webhook event was processed already: its status is in the prescription's "
            "history, so processing it again would change nothing"
        )
    if event.state == WebhookEventState.PENDING.value and not is_stale(event, now):
        minutes = int(STALE_PENDING_AFTER.total_seconds() // 60)
        return (
            "this webhook event is still waiting for its processing job; it can be "
            f"reprocessed once it has been pending for {minutes} minutes"
        )
    if event.state not in UNRESOLVED_STATES:
        return f"a webhook event in state {event.state!r} cannot be reprocessed"
    return None


def _payload_refs(payload: dict[str, Any]) -> tuple[str | None, uuid.UUID | None]:
    """(platform prescription id, rxroute id from ``client_ref_id``) named by a payload."""
    data = payload.get("data")
    if not isinstance(data, dict):
        return None, None
    platform_id = data.get("prescription_id")
    client_ref = data.get("client_ref_id")
    try:
        ref = uuid.UUID(client_ref) if isinstance(client_ref, str) else None
    except ValueError:
        ref = None
    return (platform_id if isinstance(platform_id, str) and platform_id else None), ref


async def linked_prescriptions(
    session: AsyncSession, events: Iterable[InboundWebhookEvent]
) -> dict[uuid.UUID, uuid.UUID]:
    """Event id -> the prescription it is about, for links on the support pages.

    An event processed to the end carries its prescription; a failed or pending one does
    not (its transaction was rolled back, or never ran), so it is matched by the ids in its
    payload: the platform's id first, else ``client_ref_id``. For display only.
    """
    links: dict[uuid.UUID, uuid.UUID] = {}
    wanted: dict[uuid.UUID, tuple[str | None, uuid.UUID | None]] = {}
    for event in events:
        if event.prescription_id is not None:
            links[event.id] = event.prescription_id
        else:
            wanted[event.id] = _payload_refs(event.payload)
    platform_ids = {p for p, _ in wanted.values() if p}
    refs = {r for _, r in wanted.values() if r}
    if not (platform_ids or refs):
        return links
    rows = await session.execute(
        select(Prescription.id, Prescription.provider_prescription_id).where(
            or_(Prescription.provider_prescription_id.in_(platform_ids), Prescription.id.in_(refs))
        )
    )
    by_platform: dict[str, uuid.UUID] = {}
    known: set[uuid.UUID] = set()
    for prescription_id, platform_id in rows:
        known.add(prescription_id)
        if platform_id:
            by_platform[platform_id] = prescription_id
    for event_id, (platform_id, ref) in wanted.items():
        if platform_id and platform_id in by_platform:
            links[event_id] = by_platform[platform_id]
        elif ref in known and ref is not None:
            links[event_id] = ref
    return links


async def events_about(
    session: AsyncSession, prescription_id: uuid.UUID, platform_id: str | None
) -> list[InboundWebhookEvent]:
    """A prescription's webhook events: those linked to it, and its pending or failed ones.

    Pending and failed events are not linked yet, so they are matched by their payload's
    ``client_ref_id`` or platform id (few rows: the state index narrows them first).
    """
    data = InboundWebhookEvent.payload["data"]
    mentions = [data["client_ref_id"].astext == str(prescription_id)]
    if platform_id:
        mentions.append(data["prescription_id"].astext == platform_id)
    return list(
        await session.scalars(
            select(InboundWebhookEvent)
            .where(
                or_(
                    InboundWebhookEvent.prescription_id == prescription_id,
                    and_(
                        InboundWebhookEvent.prescription_id.is_(None),
                        InboundWebhookEvent.state.in_(
                            (WebhookEventState.PENDING.value, WebhookEventState.FAILED.value)
                        ),
                        or_(*mentions),
                    ),
                )
            )
            .order_by(InboundWebhookEvent.received_at, InboundWebhookEvent.id)
        )
    )


# --- support's reprocess ----------------------------------------------------------------


async def request_reprocess(
    session: AsyncSession, user: User, event_id: uuid.UUID
) -> InboundWebhookEvent:
    """Reset the event to pending, record who asked, defer its job: the caller commits.

    Refused (409) for a processed event, and for a pending one that is not stale yet (its
    job is most likely still coming; this also makes a double-click queue it once).
    """
    from rxroute.webhooks.receiver import processing_lock_key
    from rxroute.webhooks.tasks import defer_processing

    event = await session.scalar(
        select(InboundWebhookEvent).where(InboundWebhookEvent.id == event_id).with_for_update()
    )
    if event is None:
        raise NotFound("webhook event not found")
    now = await database_now(session)
    refusal = reprocess_refusal(event, now)
    if refusal is not None:
        raise Conflict(refusal)
    previous_state, previous_error_type = event.state, event.error_type
    event.state = WebhookEventState.PENDING.value
    event.error = None
    event.error_type = None
    event.attempts = None
    event.failed_at = None
    event.processed_at = None
    event.reprocess_count += 1
    event.reprocess_requested_by = user.id
    event.reprocess_requested_at = now
    await defer_processing(session, event.id, lock_key=processing_lock_key(event.payload))
    log.info(
        "webhook_reprocess_requested",
        event_id=str(event.id),
        actor=str(user.id),
        previous_state=previous_state,
        previous_error_type=previous_error_type,
        reprocess_count=event.reprocess_count,
    )
    return event
