"""Rules about deliveries. Services add and flush; the caller owns the transaction.

* At most one open (pending or live) delivery per prescription: the database refuses a
  second (partial unique index), and :func:`open_delivery` closes the current one first.
* A delivery that may have reached the far side (``reached_out`` or a far-side reference)
  and is replaced or cancelled is marked ``needs_withdrawal``: the send job resolves it
  before anything new goes out.
* Far-side facts are recorded against the delivery they are about (:func:`observe`). Only
  the current delivery's facts move the prescription's status; a fact about a replaced
  delivery that shows a live copy marks that delivery for withdrawal.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Delivery, DeliveryAttempt, DeliveryState, Pharmacy, Prescription
from rxroute.prescriptions.history import Recorded, lock_prescription, record_status
from rxroute.prescriptions.lifecycle import FINAL_STATUSES, PROVIDER_STATUSES, Source, Status

#: Far-side facts that mean the far side holds a copy someone could still dispense.
LIVE_FACTS = frozenset({Status.ISSUED, Status.EMAILED, Status.SIGNED, Status.PRINTED})


async def get_delivery(
    session: AsyncSession, delivery_id: uuid.UUID, *, for_update: bool = False
) -> Delivery:
    statement = (
        select(Delivery).where(Delivery.id == delivery_id).execution_options(populate_existing=True)
    )
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one()


async def lock_both(
    session: AsyncSession, prescription_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[Prescription, Delivery]:
    """The prescription and one of its deliveries, locked in that order (the one lock order)."""
    prescription = await lock_prescription(session, prescription_id)
    return prescription, await get_delivery(session, delivery_id, for_update=True)


async def current_delivery(session: AsyncSession, prescription: Prescription) -> Delivery | None:
    if prescription.current_delivery_id is None:
        return None
    return await get_delivery(session, prescription.current_delivery_id)


async def deliveries_of(session: AsyncSession, prescription_id: uuid.UUID) -> list[Delivery]:
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.prescription_id == prescription_id)
            .order_by(Delivery.number)
            .execution_options(populate_existing=True)
        )
    )


async def awaiting_withdrawal(session: AsyncSession, prescription_id: uuid.UUID) -> list[Delivery]:
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.prescription_id == prescription_id, Delivery.needs_withdrawal)
            .order_by(Delivery.number)
            .execution_options(populate_existing=True)
        )
    )


def may_be_on_far_side(delivery: Delivery) -> bool:
    """Whether the far side may hold a copy: something was sent, or it told us so."""
    return delivery.reached_out or delivery.provider_ref is not None


def close(delivery: Delivery, state: DeliveryState, reason: str) -> None:
    """Close a delivery; one that may be on the far side is marked for withdrawal."""
    was_active = delivery.state in (
        DeliveryState.PENDING.value,
        DeliveryState.LIVE.value,
        DeliveryState.FAILED.value,
    )
    taken_back = state in (DeliveryState.SUPERSEDED, DeliveryState.WITHDRAWN)
    if was_active and taken_back and may_be_on_far_side(delivery):
        delivery.needs_withdrawal = True
    delivery.state = state.value
    delivery.closed_reason = reason[:500]
    delivery.closed_at = datetime.now(UTC)
    delivery.claim = None


async def open_delivery(
    session: AsyncSession,
    prescription: Prescription,
    *,
    pharmacy: Pharmacy,
    region: str,
    channel: str,
    source: Source,
    actor: str | None,
    reason: str | None,
) -> Delivery:
    """Replace the current delivery (if any) with a new one and queue it.

    ``prescription`` must be locked by the caller. The replaced delivery is superseded and,
    if it may be on the far side, marked for withdrawal; the caller defers the send job in
    the same transaction, which withdraws before it delivers.
    """
    previous = await current_delivery(session, prescription)
    number = 1
    if previous is not None:
        number = 1 + int(
            await session.scalar(
                select(func.max(Delivery.number)).where(Delivery.prescription_id == prescription.id)
            )
            or 0
        )
        if previous.state != DeliveryState.WITHDRAWN.value:
            close(
                previous,
                DeliveryState.SUPERSEDED,
                f"replaced by delivery {number}" + (f": {reason}" if reason else ""),
            )
        await session.flush()
    delivery = Delivery(
        id=uuid.uuid4(),
        prescription_id=prescription.id,
        number=number,
        pharmacy_id=pharmacy.id,
        region=region,
        channel=channel,
        state=DeliveryState.PENDING.value,
        series=1,
        attempts_in_series=0,
        reached_out=False,
        needs_withdrawal=False,
        actor=actor,
        reason=reason,
    )
    session.add(delivery)
    await session.flush()
    prescription.current_delivery_id = delivery.id
    prescription.region = region
    prescription.channel = channel
    prescription.pharmacy_id = pharmacy.id
    prescription.provider_prescription_id = None
    prescription.provider_token = None
    prescription.failure_reason = None
    if prescription.first_queued_at is None:
        prescription.first_queued_at = datetime.now(UTC)
    # The status is derived from the new delivery's facts, of which there are none yet.
    prescription.status = Status.DRAFT.value
    detail = None
    if previous is not None:
        detail = f"delivery {number} to {pharmacy.name}" + (f": {reason}" if reason else "")
    await record_status(
        session,
        prescription.id,
        Status.QUEUED,
        source=source,
        delivery_id=delivery.id,
        actor=actor,
        detail=detail,
        prescription=prescription,
    )
    return delivery


async def start_series(
    session: AsyncSession,
    prescription: Prescription,
    delivery: Delivery,
    *,
    source: Source,
    actor: str | None,
    detail: str | None,
) -> None:
    """Support's retry (or the patient sending a failed one again): a fresh series."""
    delivery.series += 1
    delivery.attempts_in_series = 0
    delivery.state = DeliveryState.PENDING.value
    delivery.closed_reason = None
    delivery.closed_at = None
    prescription.failure_reason = None
    await session.flush()
    await record_status(
        session,
        prescription.id,
        Status.QUEUED,
        source=source,
        delivery_id=delivery.id,
        actor=actor,
        detail=detail,
        prescription=prescription,
    )


async def fail(
    session: AsyncSession, prescription: Prescription, delivery: Delivery, reason: str
) -> None:
    """The current series gave up (or was refused): the delivery and the status are failed."""
    if delivery.state != DeliveryState.PENDING.value:
        return
    delivery.state = DeliveryState.FAILED.value
    delivery.closed_reason = reason[:500]
    delivery.closed_at = datetime.now(UTC)
    delivery.claim = None
    if prescription.current_delivery_id == delivery.id:
        prescription.failure_reason = reason
    await session.flush()
    await record_status(
        session,
        prescription.id,
        Status.FAILED,
        source=Source.WORKER,
        delivery_id=delivery.id,
        detail=reason,
        prescription=prescription,
    )


async def observe(
    session: AsyncSession,
    prescription: Prescription,
    delivery: Delivery,
    status: Status,
    *,
    source: Source,
    implies: Status | None = None,
    mirror_ref: bool = False,
    ref: str | None = None,
    token: str | None = None,
    raw_status: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    actor: str | None = None,
    detail: str | None = None,
) -> Recorded:
    """Record a far-side fact about ``delivery`` and keep the delivery in step with it.

    ``implies``: the channel's delivered status (issued), recorded first when a later fact
    (signed) arrives before it, so the history never skips a real transition.
    ``mirror_ref``: the reference is the platform's prescription ID, which the prescription
    row shows (and support searches by) while this is the current delivery.
    ``prescription`` must be locked by the caller.
    """
    now = datetime.now(UTC)
    is_current = prescription.current_delivery_id == delivery.id
    if ref is not None and delivery.provider_ref is None:
        delivery.provider_ref = ref
    if token:
        delivery.provider_token = token
    delivery.last_heard_at = now
    if status in LIVE_FACTS or status in FINAL_STATUSES - {Status.VOIDED}:
        delivery.reached_out = True
        if delivery.delivered_at is None:
            delivery.delivered_at = now
        if delivery.state in (DeliveryState.PENDING.value, DeliveryState.FAILED.value):
            if is_current:
                delivery.state = DeliveryState.LIVE.value
                delivery.closed_reason = None
                delivery.closed_at = None
                prescription.failure_reason = None
            elif status in LIVE_FACTS:
                delivery.needs_withdrawal = True
        elif delivery.state != DeliveryState.LIVE.value and status in LIVE_FACTS:
            # A copy of a replaced or withdrawn delivery is live: it must be taken back.
            delivery.needs_withdrawal = True
    if status is Status.VOIDED and delivery.state == DeliveryState.LIVE.value:
        close(delivery, DeliveryState.WITHDRAWN, detail or "voided on the platform")
        delivery.needs_withdrawal = False
    await session.flush()
    if is_current:
        if mirror_ref and delivery.provider_ref is not None:
            prescription.provider_prescription_id = delivery.provider_ref
            prescription.provider_token = delivery.provider_token
        if source in (Source.WEBHOOK, Source.POLL):
            prescription.last_provider_update_at = now
    # A current delivery whose status is already at or past the implied fact, and not final,
    # got there through that fact (recorded by the send, or implied here before): it is in
    # the history, so skip the insert the unique index would refuse anyway (a round trip
    # per webhook). A final status may have come another way (a withdrawal, a pharmacy).
    current = Status(prescription.status)
    implied_before = (
        is_current and implies is not None and not current.is_final and current.rank >= implies.rank
    )
    if (
        implies is not None
        and status in PROVIDER_STATUSES
        and status is not implies
        and not implied_before
    ):
        await record_status(
            session,
            prescription.id,
            implies,
            source=source,
            delivery_id=delivery.id,
            occurred_at=occurred_at,
            detail=f"implied by {status.value}",
            prescription=prescription,
        )
    return await record_status(
        session,
        prescription.id,
        status,
        source=source,
        delivery_id=delivery.id,
        occurred_at=occurred_at,
        provider_status=raw_status,
        provider_event_id=event_id,
        actor=actor,
        detail=detail,
        prescription=prescription,
    )


def attempt_row(
    delivery: Delivery,
    action: str,
    outcome: str,
    started: datetime,
    error: str | None = None,
    *,
    attempt: int | None = None,
) -> DeliveryAttempt:
    return DeliveryAttempt(
        prescription_id=delivery.prescription_id,
        delivery_id=delivery.id,
        series=delivery.series,
        channel=delivery.channel,
        action=action,
        attempt=delivery.attempts_in_series if attempt is None else attempt,
        outcome=outcome,
        error=error,
        started_at=started,
    )


async def still_owned(session: AsyncSession, delivery_id: uuid.UUID, claim: uuid.UUID) -> bool:
    """The fencing check: is this run still the one allowed to call out for the delivery?"""
    owned = await session.scalar(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.claim == claim,
            Delivery.state == DeliveryState.PENDING.value,
        )
        .values(updated_at=func.now())
        .returning(Delivery.id)
    )
    return owned is not None
