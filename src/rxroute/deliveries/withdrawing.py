"""Taking earlier deliveries back before anything new goes out.

A delivery marked ``needs_withdrawal`` may be live on the far side. For a channel that can
look up (the platform), every live copy of the prescription is voided except the current
delivery's own; each void is recorded against the delivery it belonged to, with the
platform's answer. For one that cannot (email), the pharmacy is sent a cancellation, and
its confirmation link already stopped working when the delivery was closed.

If the far side says an old copy was already dispensed, that is the truth: the old
delivery becomes the live one again and the new one is closed without being sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import (
    DeliveryRejected,
    DeliveryRetryable,
    FarSideCopy,
    NotSendable,
    Purpose,
)
from rxroute.channels.registry import get_channel
from rxroute.deliveries import ledger
from rxroute.models import (
    Delivery,
    DeliveryState,
    Pharmacy,
    Prescription,
    PrescriptionStatusEvent,
)
from rxroute.prescriptions.history import lock_prescription, record_status
from rxroute.prescriptions.lifecycle import Source, Status, derive_status
from rxroute.prescriptions.repository import load_for_sending
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WithdrawalResult:
    """``done``: nothing is left to withdraw. ``retry_in``: try again after this many seconds.
    ``blocked``: a reason the new delivery must not go out (an old copy was dispensed, or
    the far side refused to take one back)."""

    done: bool
    retry_in: float | None = None
    blocked: str | None = None
    #: The far side says an old copy was dispensed: that delivery is the live one again.
    dispensed: bool = False


@dataclass(frozen=True)
class RequestedBy:
    """Who asked for the withdrawal (a patient's cancel, support's void), for the history."""

    source: Source
    actor: str | None
    reason: str


@dataclass(frozen=True)
class _Plan:
    delivery_id: uuid.UUID
    number: int
    channel: str
    prepared: Any
    #: Platform references this withdrawal must leave alone (the current delivery's copy).
    keep_refs: frozenset[str]
    #: The current delivery's destination, when it may already have a copy there.
    keep_destination: str | None
    #: The withdrawn delivery's own far-side reference, when known.
    own_ref: str | None


async def _plans(runtime: Runtime, prescription_id: uuid.UUID) -> list[_Plan]:
    async with runtime.sessionmaker() as session, session.begin():
        prescription = await lock_prescription(session, prescription_id)
        waiting = await ledger.awaiting_withdrawal(session, prescription_id)
        if not waiting:
            return []
        loaded = await load_for_sending(session, prescription_id)
        current = await ledger.current_delivery(session, prescription)
        keep_refs: set[str] = set()
        keep_destination = None
        if current is not None and not current.needs_withdrawal:
            if current.provider_ref:
                keep_refs.add(current.provider_ref)
            if current.reached_out:
                pharmacy = await session.get(Pharmacy, current.pharmacy_id)
                if pharmacy is not None:
                    channel = get_channel(runtime, current.channel)
                    keep_destination = channel.destination(pharmacy)
        plans = []
        for delivery in waiting:
            channel = get_channel(runtime, delivery.channel)
            try:
                prepared = await channel.prepare(
                    runtime, session, loaded, delivery, Purpose.WITHDRAW
                )
            except NotSendable as exc:
                # Nothing we can send to withdraw it (no credentials, no email address):
                # support must do it by hand; record why and stop trying.
                delivery.needs_withdrawal = False
                session.add(
                    ledger.attempt_row(
                        delivery,
                        "withdraw",
                        "rejected",
                        datetime.now(UTC),
                        f"could not withdraw: {exc.message}",
                        attempt=0,
                    )
                )
                continue
            plans.append(
                _Plan(
                    delivery.id,
                    delivery.number,
                    delivery.channel,
                    prepared,
                    frozenset(keep_refs),
                    keep_destination,
                    delivery.provider_ref,
                )
            )
        return plans


async def resolve_withdrawals(
    runtime: Runtime, prescription_id: uuid.UUID, *, requested_by: RequestedBy | None = None
) -> WithdrawalResult:
    """Withdraw every delivery of the prescription that is marked for it."""
    for plan in await _plans(runtime, prescription_id):
        result = await _withdraw(runtime, prescription_id, plan, requested_by)
        if not result.done:
            return result
    return WithdrawalResult(done=True)


def _targets(plan: _Plan, copies: list[FarSideCopy]) -> list[FarSideCopy]:
    return [
        copy
        for copy in copies
        if copy.is_live
        and copy.ref not in plan.keep_refs
        and not (plan.keep_destination is not None and copy.destination == plan.keep_destination)
    ]


def _dispensed(plan: _Plan, copies: list[FarSideCopy]) -> FarSideCopy | None:
    """A dispensed copy this withdrawal is about: too late to take it back."""
    mine = [c for c in copies if c.status is Status.DISPENSED and c.ref not in plan.keep_refs]
    exact = [c for c in mine if c.ref == plan.own_ref]
    chosen = exact or mine
    return chosen[0] if chosen else None


async def _withdraw(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    plan: _Plan,
    requested_by: RequestedBy | None,
) -> WithdrawalResult:
    channel = get_channel(runtime, plan.channel)
    started = datetime.now(UTC)
    try:
        copies = await channel.look_up(runtime, plan.prepared)
        if copies is None:
            withdrawn = [await channel.withdraw(runtime, plan.prepared, None)]
            done: list[tuple[FarSideCopy | None, str | None]] = [(None, withdrawn[0].raw_status)]
        else:
            dispensed = _dispensed(plan, copies)
            if dispensed is not None:
                raise DeliveryRejected(
                    f"the platform says copy {dispensed.ref} was already dispensed",
                    final_status=Status.DISPENSED,
                )
            done = []
            for copy in _targets(plan, copies):
                answer = await channel.withdraw(runtime, plan.prepared, copy)
                done.append((copy, answer.raw_status))
    except DeliveryRetryable as exc:
        return await _record_retry(runtime, prescription_id, plan, started, exc)
    except DeliveryRejected as exc:
        if exc.final_status is Status.DISPENSED:
            return await _record_dispensed_elsewhere(runtime, prescription_id, plan, exc)
        return await _record_refused(runtime, prescription_id, plan, started, exc)
    async with runtime.sessionmaker() as session, session.begin():
        prescription, delivery = await ledger.lock_both(session, prescription_id, plan.delivery_id)
        for withdrawn_copy, raw_status in done:
            what = (
                f"voided platform copy {withdrawn_copy.ref} (was {withdrawn_copy.raw_status})"
                if withdrawn_copy is not None
                else "cancellation emailed to the pharmacy"
            )
            session.add(ledger.attempt_row(delivery, "withdraw", "succeeded", started, what))
            why = f"{requested_by.reason}; " if requested_by else ""
            await ledger.observe(
                session,
                prescription,
                delivery,
                Status.VOIDED,
                source=requested_by.source if requested_by else Source.WORKER,
                actor=requested_by.actor if requested_by else None,
                raw_status=raw_status,
                detail=f"{why}delivery {plan.number} withdrawn: {what}",
            )
        if not done:
            session.add(
                ledger.attempt_row(
                    delivery, "withdraw", "not_found", started, "no live copy on the platform"
                )
            )
        if (
            delivery.id == prescription.current_delivery_id
            and delivery.state == DeliveryState.WITHDRAWN.value
            and not Status(prescription.status).is_final
        ):
            # A cancel whose request died after (or before) taking the copy back: nothing live
            # is left now, so the cancel is complete and the prescription says so.
            await record_status(
                session,
                prescription.id,
                Status.VOIDED,
                source=requested_by.source if requested_by else Source.WORKER,
                delivery_id=delivery.id,
                actor=requested_by.actor if requested_by else None,
                detail=f"delivery {plan.number} withdrawn: {delivery.closed_reason or 'cancelled'}",
                prescription=prescription,
            )
        delivery.needs_withdrawal = False
        if delivery.state == DeliveryState.LIVE.value:
            ledger.close(delivery, DeliveryState.WITHDRAWN, "withdrawn")
            delivery.needs_withdrawal = False
    log.info(
        "delivery_withdrawn",
        prescription_id=str(prescription_id),
        delivery=plan.number,
        copies=len(done),
    )
    return WithdrawalResult(done=True)


async def _record_retry(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    plan: _Plan,
    started: datetime,
    exc: DeliveryRetryable,
) -> WithdrawalResult:
    channel = get_channel(runtime, plan.channel)
    async with runtime.sessionmaker() as session, session.begin():
        delivery = await ledger.get_delivery(session, plan.delivery_id, for_update=True)
        delivery.attempts_in_series += 1
        outcome = "ambiguous" if exc.ambiguous else "retryable"
        session.add(ledger.attempt_row(delivery, "withdraw", outcome, started, exc.message))
        delay = channel.retry_policy(runtime.settings).delay(
            delivery.attempts_in_series, exc.retry_after
        )
    log.warning(
        "delivery_withdrawal_retry", prescription_id=str(prescription_id), delivery=plan.number
    )
    return WithdrawalResult(done=False, retry_in=delay)


async def _record_refused(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    plan: _Plan,
    started: datetime,
    exc: DeliveryRejected,
) -> WithdrawalResult:
    reason = (
        f"the earlier delivery {plan.number} could not be withdrawn ({exc.message}); "
        "support must cancel it with the far side before this can be sent"
    )
    async with runtime.sessionmaker() as session, session.begin():
        delivery = await ledger.get_delivery(session, plan.delivery_id, for_update=True)
        session.add(ledger.attempt_row(delivery, "withdraw", "rejected", started, exc.message))
    return WithdrawalResult(done=False, blocked=reason)


async def _record_dispensed_elsewhere(
    runtime: Runtime, prescription_id: uuid.UUID, plan: _Plan, exc: DeliveryRejected
) -> WithdrawalResult:
    """An old copy was dispensed: it is the live delivery again, and the new one stops."""
    reason = f"the earlier delivery {plan.number} was already dispensed ({exc.message})"
    async with runtime.sessionmaker() as session, session.begin():
        prescription, old = await ledger.lock_both(session, prescription_id, plan.delivery_id)
        current = await ledger.current_delivery(session, prescription)
        if current is not None and current.id != old.id and current.is_open:
            ledger.close(current, DeliveryState.SUPERSEDED, reason)
            current.needs_withdrawal = current.needs_withdrawal and current.reached_out
            await session.flush()
        old.state = DeliveryState.LIVE.value
        old.needs_withdrawal = False
        old.closed_reason = None
        old.closed_at = None
        await session.flush()
        prescription.current_delivery_id = old.id
        prescription.status = await _derived(session, prescription, old)
        await ledger.observe(
            session,
            prescription,
            old,
            Status.DISPENSED,
            source=Source.WORKER,
            # A copy we never heard was delivered (its answer lost, its worker killed) was:
            # the history must not skip that transition.
            implies=get_channel(runtime, plan.channel).delivered_status,
            detail=reason,
        )
    log.warning(
        "delivery_dispensed_elsewhere", prescription_id=str(prescription_id), delivery=plan.number
    )
    return WithdrawalResult(done=False, blocked=reason, dispensed=True)


async def _derived(session: AsyncSession, prescription: Prescription, delivery: Delivery) -> str:
    """The status implied by a delivery's recorded facts (used when it becomes current again)."""
    rows = await session.scalars(
        select(PrescriptionStatusEvent.status)
        .where(PrescriptionStatusEvent.delivery_id == delivery.id)
        .order_by(PrescriptionStatusEvent.seq)
    )
    return derive_status(Status(value) for value in rows).value
