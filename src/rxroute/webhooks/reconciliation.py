"""Reconciliation sweep: ask the platform about prescriptions that have been quiet too long.

A run reads due candidates a batch at a time (a few statements per batch, not per
prescription), polls them with at most ``RXROUTE_RECONCILE_CONCURRENCY`` calls in flight, and
goes on to the next batch until none are due or ``RXROUTE_RECONCILE_BUDGET_SECONDS`` is spent,
so throughput is set by the platform's latency, not by a fixed count per run. The next batch
is read while the current one's polls are in flight (:data:`BATCHES_IN_FLIGHT`), and its polls
queue behind them for the same slots, so no slot waits for a batch's slowest answer, its
quiet stamps or the next read (docs/performance.md, "Reconciliation at 100,000").

Every candidate read is moved along, so one run never reads it twice and failures cannot
starve the rest: a successful poll stamps ``last_provider_update_at`` (next due after
``RXROUTE_RECONCILE_AFTER_SECONDS``); a failed one (or one that cannot be polled) gets
``reconcile_next_at`` pushed out exponentially, capped at :data:`BACKOFF_CAP`.
No transaction is held across a platform call.

Most polls of a quiet prescription tell nothing new. Those are stamped together, one
statement per batch (:func:`stamp_quiet`); only an answer that differs goes through the
status path, one short transaction each, so a 100,000-prescription sweep is not 100,000
transactions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Select, func, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import Channel, DeliveryError, NotSendable, Purpose
from rxroute.channels.registry import channel_names, get_channel
from rxroute.deliveries import ledger
from rxroute.models import Delivery, DeliveryState, Prescription
from rxroute.observability.metrics import RECONCILE_CORRECTIONS, RECONCILE_POLLS
from rxroute.prescriptions.history import lock_prescription
from rxroute.prescriptions.lifecycle import POLLABLE_STATUSES, Source
from rxroute.prescriptions.repository import for_sending
from rxroute.runtime import Runtime, get_runtime

log = structlog.get_logger(__name__)

RECONCILE_BATCH = 200
#: Batches read and not yet recorded at once: the one being polled and the next, read early.
BATCHES_IN_FLIGHT = 2
#: The first wait after a failed poll; it doubles with each failure in a row ...
BACKOFF_BASE = timedelta(seconds=60)
#: ... up to this (a platform outage costs at most this much delay once it is over).
BACKOFF_CAP = timedelta(hours=1)

POLLABLE = tuple(status.value for status in POLLABLE_STATUSES)


def polling_channels(runtime: Runtime) -> list[str]:
    return [name for name in channel_names() if get_channel(runtime, name).polls]


def quiet_since_last_heard() -> ColumnElement[datetime]:
    """When we last heard anything about it: the platform's last word, else our last change.

    The partial index ``ix_prescriptions_reconcile`` is on exactly this expression (then
    ``reconcile_next_at``), so the candidates are read longest-silent first and the read stops
    after a batch.
    """
    return func.coalesce(Prescription.last_provider_update_at, Prescription.updated_at)


def reconcile_candidates(
    channels: list[str],
    quiet_since: datetime,
    now: datetime | None = None,
    polling: Collection[uuid.UUID] = (),
) -> Select[uuid.UUID]:
    """Issued, not final, on a polling channel, silent since ``quiet_since``, not backed off,
    and not among ``polling`` (read earlier in this run, their answers not yet recorded)."""
    last_heard = quiet_since_last_heard()
    due_by: ColumnElement[datetime] = literal(now) if now is not None else func.now()
    statement = (
        select(Prescription.id)
        .where(
            Prescription.channel.in_(channels),
            Prescription.status.in_(POLLABLE),
            Prescription.provider_prescription_id.is_not(None),
            last_heard < quiet_since,
            or_(Prescription.reconcile_next_at.is_(None), Prescription.reconcile_next_at <= due_by),
        )
        .order_by(last_heard)
        .limit(RECONCILE_BATCH)
    )
    if polling:
        statement = statement.where(Prescription.id.not_in(list(polling)))
    return statement


def backoff(failures: int) -> timedelta:
    """The wait after the ``failures``-th failed poll in a row (1, 2, 4 ... minutes, capped)."""
    exponent: int = min(max(failures - 1, 0), 20)
    wait: timedelta = BACKOFF_BASE * (2**exponent)
    return min(BACKOFF_CAP, wait)


@dataclass(frozen=True)
class Pollable:
    """What one poll needs, read in the batch's transaction and used after it ends."""

    prescription_id: uuid.UUID
    delivery_id: uuid.UUID
    ref: str
    channel: Channel
    prepared: Any
    #: The status when the batch was read, if a poll answering the same could change
    #: nothing (the delivery is live and the prescription shows its ref): such an answer
    #: is recorded with the batch's other quiet ones, in one statement (:func:`stamp_quiet`).
    quiet_status: str | None = None


@dataclass
class Batch:
    """What can be polled; what cannot (no platform copy to ask about, or the channel
    refuses: ``refused`` of them), which back off like a failed poll rather than block the
    head of the order."""

    ready: list[Pollable]
    skipped: list[uuid.UUID]
    refused: int


async def load_batch(session: AsyncSession, runtime: Runtime, ids: list[uuid.UUID]) -> Batch:
    """The batch's prescriptions and current deliveries in a fixed number of statements."""
    prescriptions = (await session.scalars(for_sending(*ids))).all()
    delivery_ids = [p.current_delivery_id for p in prescriptions if p.current_delivery_id]
    deliveries = {
        d.id: d
        for d in await session.scalars(
            select(Delivery)
            .where(Delivery.id.in_(delivery_ids))
            .execution_options(populate_existing=True)
        )
    }
    batch = Batch(ready=[], skipped=[], refused=0)
    for prescription in prescriptions:
        delivery_id = prescription.current_delivery_id
        delivery = deliveries.get(delivery_id) if delivery_id is not None else None
        if delivery is None or delivery.provider_ref is None:
            batch.skipped.append(prescription.id)
            continue
        channel = get_channel(runtime, delivery.channel)
        try:
            prepared = await channel.prepare(runtime, session, prescription, delivery, Purpose.POLL)
        except NotSendable:
            batch.skipped.append(prescription.id)
            batch.refused += 1
            continue
        settled = (
            delivery.state == DeliveryState.LIVE.value
            and prescription.provider_prescription_id == delivery.provider_ref
        )
        batch.ready.append(
            Pollable(
                prescription.id,
                delivery.id,
                delivery.provider_ref,
                channel,
                prepared,
                quiet_status=prescription.status if settled else None,
            )
        )
    return batch


async def back_off(session: AsyncSession, ids: list[uuid.UUID], moment: datetime) -> None:
    """One statement for the batch: count the failure, push the next poll out (capped)."""
    if not ids:
        return
    exponent = func.least(func.greatest(Prescription.reconcile_failures, 0), 20)
    seconds = func.least(
        BACKOFF_CAP.total_seconds(), BACKOFF_BASE.total_seconds() * func.power(2, exponent)
    )
    await session.execute(
        update(Prescription)
        .where(Prescription.id.in_(ids))
        .values(
            reconcile_failures=Prescription.reconcile_failures + 1,
            reconcile_next_at=literal(moment) + func.make_interval(0, 0, 0, 0, 0, 0, seconds),
        )
        .execution_options(synchronize_session=False)
    )


async def stamp_quiet(session: AsyncSession, items: list[Pollable]) -> None:
    """Record polls that told nothing new, in one statement for the batch.

    What the status path would have written for them (it appends no history: the fact is
    already there): heard from now, no failures, next due after the quiet time; and the
    delivery's ``last_heard_at``. Only rows still as the batch read them (same current
    delivery, same status) are touched; one that moved meanwhile was written by whoever
    moved it, and is read again once quiet.
    """
    if not items:
        return
    heard = datetime.now(UTC)
    unchanged = tuple_(Prescription.id, Prescription.current_delivery_id, Prescription.status)
    stamped = (
        update(Prescription)
        .where(unchanged.in_([(i.prescription_id, i.delivery_id, i.quiet_status) for i in items]))
        .values(last_provider_update_at=heard, reconcile_failures=0, reconcile_next_at=None)
        .returning(Prescription.current_delivery_id)
        .cte("stamped")
    )
    await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(select(stamped.c.current_delivery_id)))
        .values(last_heard_at=heard)
        .execution_options(synchronize_session=False)
    )


async def poll_one(
    runtime: Runtime,
    item: Pollable,
    limit: asyncio.Semaphore,
    counts: dict[str, int],
    quiet: list[Pollable],
) -> bool:
    """Poll, then record: a change (or anything but the status the batch read) in a short
    transaction of its own through the status path; the same status is added to ``quiet``
    for :func:`stamp_quiet`. False if the poll failed."""
    async with limit:
        try:
            copy = await item.channel.poll(runtime, item.prepared, item.ref)
        except DeliveryError as exc:
            counts["errors"] += 1
            RECONCILE_POLLS.labels(outcome="error").inc()
            log.warning(
                "reconcile_failed",
                prescription_id=str(item.prescription_id),
                error_type=type(exc).__name__,
            )
            return False
        counts["polled"] += 1
        RECONCILE_POLLS.labels(outcome="ok").inc()
        if item.quiet_status is not None and copy.status.value == item.quiet_status:
            quiet.append(item)
            return True
        async with runtime.sessionmaker() as session, session.begin():
            # No autoflush: the prescription is written once, not before each query too.
            session.autoflush = False
            locked = await lock_prescription(session, item.prescription_id)
            locked.last_provider_update_at = datetime.now(UTC)
            locked.reconcile_failures = 0
            locked.reconcile_next_at = None
            target = await ledger.get_delivery(session, item.delivery_id, for_update=True)
            recorded = await ledger.observe(
                session,
                locked,
                target,
                copy.status,
                source=Source.POLL,
                implies=item.channel.delivered_status,
                mirror_ref=True,
                raw_status=copy.raw_status,
            )
        if recorded.appended:
            counts["changed"] += 1
            RECONCILE_CORRECTIONS.inc()
        return True


async def poll_batch(
    runtime: Runtime,
    ready: list[Pollable],
    limit: asyncio.Semaphore,
    counts: dict[str, int],
    moment: datetime,
) -> None:
    """Poll one batch (sharing ``limit`` with the batch read after it), then record its
    failures and quiet answers in one transaction."""
    quiet: list[Pollable] = []
    outcomes = await asyncio.gather(*(poll_one(runtime, i, limit, counts, quiet) for i in ready))
    failed = [item.prescription_id for item, ok in zip(ready, outcomes, strict=True) if not ok]
    if failed or quiet:
        async with runtime.sessionmaker() as session, session.begin():
            await back_off(session, failed, moment)
            await stamp_quiet(session, quiet)


async def sweep(now: datetime | None = None) -> dict[str, int]:
    """Batches until none are due or the budget is spent; counts for tests and logs."""
    runtime = get_runtime()
    settings = runtime.settings
    moment = now or datetime.now(UTC)
    started = datetime.now(UTC)
    # Polled ones are stamped with the real time, so with ``now`` in the future (tests) they
    # would look due again: nothing heard from after this run began is read again by it.
    quiet_since = min(moment - timedelta(seconds=settings.reconcile_after_seconds), started)
    deadline = time.monotonic() + settings.reconcile_budget_seconds
    limit = asyncio.Semaphore(settings.reconcile_concurrency)
    channels = polling_channels(runtime)
    counts = {"polled": 0, "changed": 0, "errors": 0}
    seen: set[uuid.UUID] = set()
    # Batches read and not yet recorded, oldest first: their ids are left out of the next
    # read (they are still due until their answers are recorded).
    in_flight: list[tuple[asyncio.Task[None], list[uuid.UUID]]] = []
    try:
        while time.monotonic() < deadline:
            polling = [pid for _, ids in in_flight for pid in ids]
            async with runtime.sessionmaker() as session, session.begin():
                candidates = reconcile_candidates(channels, quiet_since, moment, polling)
                ids = list(await session.scalars(candidates))
                if seen.issuperset(ids):
                    # None due, or only ones this run already asked about (each is moved
                    # along, so this is a guard against asking the platform in a loop).
                    break
                seen.update(ids)
                batch = await load_batch(session, runtime, ids)
                counts["errors"] += batch.refused
                await back_off(session, batch.skipped, moment)
            task = asyncio.create_task(poll_batch(runtime, batch.ready, limit, counts, moment))
            in_flight.append((task, ids))
            if len(in_flight) >= BATCHES_IN_FLIGHT:
                await in_flight.pop(0)[0]
        while in_flight:
            await in_flight.pop(0)[0]
    except BaseException:
        # Nothing left polling behind the caller's back (a cancelled run, a database error).
        for task, _ in in_flight:
            task.cancel()
        await asyncio.gather(*(task for task, _ in in_flight), return_exceptions=True)
        raise
    return counts
