"""Jobs: process a stored webhook event; reconcile what webhooks may have missed.

``process_webhook_event`` runs one at a time per platform prescription (a procrastinate lock
on its id), in any order across prescriptions. ``reconcile_erx`` asks the platform about
prescriptions that are issued but not final and have heard nothing for
``RXROUTE_RECONCILE_AFTER_SECONDS``, so a lost webhook delays a status but never loses it;
it also re-queues sends whose job vanished (a queue wiped, a job failed past its retries).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import procrastinate
import structlog
from sqlalchemy import (
    CompoundSelect,
    select,
    text,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.db.purge import delete_in_batches
from rxroute.jobs import defer_in_session, queue
from rxroute.models import Delivery, InboundWebhookEvent, Prescription, WebhookEventState
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.tasks import defer_send, send_lock
from rxroute.runtime import get_runtime
from rxroute.webhooks.processing import process_event
from rxroute.webhooks.reconciliation import (
    RECONCILE_BATCH,
    sweep,
)

log = structlog.get_logger(__name__)

#: A queued/sending prescription with no live job for this long gets its send re-queued.
ORPHANED_SEND_AFTER = timedelta(minutes=5)


@queue.task(
    name="process_webhook_event",
    retry=procrastinate.RetryStrategy(max_attempts=10, exponential_wait=2),
    pass_context=True,
)
async def process_webhook_event(context: procrastinate.JobContext, event_id: str) -> str:
    """Process the event; when its last attempt fails too, it becomes a dead letter.

    The retry strategy above is the only statement of how often processing is tried:
    :func:`dead_letter_if_last` asks it whether this failure is the last.
    """
    from rxroute.webhooks.dead_letters import dead_letter_if_last

    runtime = get_runtime()
    key = uuid.UUID(event_id)
    try:
        async with runtime.sessionmaker() as session, session.begin():
            return await process_event(session, key)
    except Exception as error:
        await dead_letter_if_last(runtime.sessionmaker, context, key, error)
        raise


def processing_lock(lock_key: str) -> str:
    """The procrastinate lock of an event's processing job (see ``processing_lock_key``)."""
    return f"erx:{lock_key}"


def processing_deferrer(lock_key: str) -> procrastinate.jobs.JobDeferrer:
    """The task configured as every processing job is: the receiver's one-statement defer
    (:mod:`rxroute.webhooks.ingest`) reads its queue, priority and lock from here."""
    return process_webhook_event.configure(lock=processing_lock(lock_key))


async def defer_processing(session: AsyncSession, event_id: uuid.UUID, *, lock_key: str) -> int:
    return await defer_in_session(
        session, process_webhook_event, lock=processing_lock(lock_key), event_id=str(event_id)
    )


async def reconcile_once(now: datetime | None = None) -> dict[str, int]:
    """One reconciliation run (see :mod:`rxroute.webhooks.reconciliation`), then the
    orphaned-send sweep; returns counts for tests and logs."""
    counts = await sweep(now)
    counts["requeued"] = await requeue_orphaned_sends(now or datetime.now(UTC))
    return counts


def orphaned_sends(stale_before: datetime) -> CompoundSelect[uuid.UUID]:
    """Queued or sending with no change since ``stale_before``, or with an earlier delivery
    waiting that long to be withdrawn.

    A UNION rather than one OR: each half reads its own index (``ix_prescriptions_status_updated``,
    ``ix_deliveries_needs_withdrawal``), where ``... OR id IN (subquery)`` reads every row.
    """
    stuck = select(Prescription.id).where(
        Prescription.status.in_((Status.QUEUED.value, Status.SENDING.value)),
        Prescription.updated_at < stale_before,
        Prescription.channel.is_not(None),
    )
    waiting_withdrawal = select(Delivery.prescription_id).where(
        Delivery.needs_withdrawal, Delivery.updated_at < stale_before
    )
    return union(stuck, waiting_withdrawal).limit(RECONCILE_BATCH)


async def requeue_orphaned_sends(now: datetime) -> int:
    """Prescriptions whose send job is gone get a new one.

    Queued or sending ones (nothing will send them), and any with an earlier delivery still
    waiting to be withdrawn (nothing would take a possibly live copy back).
    """
    runtime = get_runtime()
    stale_before = now - ORPHANED_SEND_AFTER
    requeued = 0
    async with runtime.sessionmaker() as session, session.begin():
        orphans = list(await session.scalars(orphaned_sends(stale_before)))
        for prescription_id in orphans:
            has_job = await session.scalar(
                text(
                    "SELECT 1 FROM procrastinate_jobs WHERE lock = :lock "
                    "AND status IN ('todo', 'doing') LIMIT 1"
                ),
                {"lock": send_lock(prescription_id)},
            )
            if has_job is None:
                await defer_send(session, prescription_id)
                requeued += 1
                log.warning("orphaned_send_requeued", prescription_id=str(prescription_id))
    return requeued


@queue.periodic(cron="* * * * *", periodic_id="reconcile-erx")
@queue.task(name="reconcile_erx", queueing_lock="reconcile_erx")
async def reconcile_erx(timestamp: int) -> dict[str, int]:
    return await reconcile_once()


@queue.periodic(cron="17 3 * * *", periodic_id="purge-webhook-events")
@queue.task(name="purge_webhook_events", queueing_lock="purge_webhook_events")
async def purge_webhook_events(timestamp: int) -> int:
    """Drop processed events past the retention window (far beyond the sender's retries)."""
    runtime = get_runtime()
    cutoff = datetime.now(UTC) - timedelta(days=runtime.settings.webhook_event_retention_days)
    return await delete_in_batches(
        runtime.sessionmaker,
        InboundWebhookEvent,
        InboundWebhookEvent.received_at < cutoff,
        InboundWebhookEvent.state == WebhookEventState.PROCESSED.value,
    )
