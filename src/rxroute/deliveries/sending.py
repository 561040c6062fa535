"""The send job's body, for every channel: get the current delivery to the far side once.

The far side may not deduplicate (the platform does not): a second issue is a second legal
prescription. So, for every channel alike:

1. Earlier deliveries marked for withdrawal are taken back first
   (:mod:`rxroute.deliveries.withdrawing`); nothing new goes out until they are.
2. The job claims the current delivery (a fresh ``claim``), counts the attempt on the
   delivery's one counter, marks it ``sending`` and commits *before* calling out.
3. If an earlier attempt may have reached the far side (``reached_out``), it looks the
   prescription up first (where the channel can). A copy at the delivery's own destination
   is adopted; a stray live copy elsewhere is voided and recorded.
4. After a look-up, and before calling out, the fencing check proves the run still owns
   the delivery (a worker cut off and retried as stalled has lost it); without a look-up
   the claim committed just before the call is that proof. The call itself is bounded by
   the channel's total deadline, below the stalled-job interval.
5. The answer is recorded in one transaction: delivered (the delivery is live), a retry
   deferred in the same transaction with the channel's backoff, or failed with the far
   side's own words. A delivery withdrawn while the call was in flight is marked for
   withdrawal again, and the job re-queued to take the new copy back.

The common case - a first attempt with nothing to withdraw and nobody else touching the
rows - takes :mod:`rxroute.deliveries.common_path`: the same steps as three statements in
all, each a compare-and-set that writes nothing if anything moved, and then the general path
below (locks and re-reads) takes over. The rules are the same code on both paths.

Jobs for one prescription never overlap (a queue lock per prescription). Nothing here logs
PHI: ids, statuses and the far side's messages only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.base import (
    DeliveryRejected,
    DeliveryRetryable,
    NotSendable,
    Purpose,
)
from rxroute.channels.registry import get_channel
from rxroute.deliveries import common_path, common_record, ledger
from rxroute.deliveries.claims import Claimed, SendOutcome
from rxroute.deliveries.looking_up import look_up
from rxroute.deliveries.withdrawing import WithdrawalResult, resolve_withdrawals
from rxroute.job_running import RunningJob
from rxroute.models import Delivery, DeliveryState, Pharmacy, Prescription
from rxroute.observability.metrics import SENDS
from rxroute.prescriptions.history import lock_prescription, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.prescriptions.repository import load_for_sending
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)


class RetryScheduler:
    """Defers the next run inside the caller's transaction (a seam for tests)."""

    async def __call__(
        self, session: AsyncSession, prescription_id: uuid.UUID, delay_seconds: float
    ) -> None:
        from rxroute.prescriptions.tasks import defer_send

        await defer_send(session, prescription_id, delay_seconds=delay_seconds)


async def send(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    *,
    schedule_retry: RetryScheduler,
    job: RunningJob | None = None,
) -> SendOutcome:
    """``job``: the send job this runs as, finished by the record statement when it can."""
    claimed = await common_path.claim(
        runtime, prescription_id, preloaded=job.preloaded if job else None
    )
    if claimed is None:
        withdrawal = await resolve_withdrawals(runtime, prescription_id)
        if not withdrawal.done:
            return await _after_withdrawal(runtime, prescription_id, withdrawal, schedule_retry)
        claimed = await _claim(runtime, prescription_id)
    if isinstance(claimed, SendOutcome):
        return claimed
    started = datetime.now(UTC)
    try:
        if claimed.must_look_up:
            found = await look_up(runtime, prescription_id, claimed, started)
            if found is not None:
                return found
            started = datetime.now(UTC)
            # The look-up took time: prove the run still owns the delivery before issuing.
            # (Without one, the claim committed just now is that proof.)
            async with runtime.sessionmaker() as session, session.begin():
                if not await ledger.still_owned(session, claimed.delivery_id, claimed.claim):
                    log.warning(
                        "send_lost_ownership",
                        prescription_id=str(prescription_id),
                        delivery=claimed.number,
                    )
                    return SendOutcome("skipped", "another run owns the delivery now")
        delivered = await claimed.channel.deliver(runtime, claimed.prepared)
    except DeliveryRetryable as exc:
        return await _after_retryable(
            runtime, prescription_id, claimed, started, exc, schedule_retry
        )
    except DeliveryRejected as exc:
        return await _after_rejection(runtime, prescription_id, claimed, started, exc)
    return await _record_delivered(
        runtime,
        prescription_id,
        claimed,
        started,
        ref=delivered.ref,
        raw_status=delivered.raw_status,
        token=delivered.token,
        schedule_retry=schedule_retry,
        job=job,
    )


async def _after_withdrawal(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    withdrawal: WithdrawalResult,
    schedule_retry: RetryScheduler,
) -> SendOutcome:
    if withdrawal.blocked is not None:
        async with runtime.sessionmaker() as session, session.begin():
            prescription = await lock_prescription(session, prescription_id)
            current = await ledger.current_delivery(session, prescription)
            if current is not None and current.state == DeliveryState.PENDING.value:
                await ledger.fail(session, prescription, current, withdrawal.blocked)
        return SendOutcome("failed", withdrawal.blocked)
    delay = float(withdrawal.retry_in or 1.0)
    async with runtime.sessionmaker() as session, session.begin():
        await schedule_retry(session, prescription_id, delay)
    return SendOutcome("retry", "waiting to withdraw an earlier delivery", delay)


async def _claim(runtime: Runtime, prescription_id: uuid.UUID) -> Claimed | SendOutcome:
    """The general claim: under the prescription's lock, re-reading everything."""
    async with runtime.sessionmaker() as session, session.begin():
        prescription = await lock_prescription(session, prescription_id)
        delivery = await ledger.current_delivery(session, prescription)
        if delivery is None or delivery.state != DeliveryState.PENDING.value:
            state = delivery.state if delivery else "none"
            return SendOutcome("skipped", f"no delivery waiting to be sent ({state})")
        channel = get_channel(runtime, delivery.channel)
        claim = uuid.uuid4()
        must_look_up = delivery.reached_out
        delivery.claim = claim
        delivery.attempts_in_series += 1
        delivery.reached_out = True
        await _record_sending(session, prescription, delivery)
        loaded = await load_for_sending(session, prescription_id)
        try:
            prepared = await channel.prepare(runtime, session, loaded, delivery, Purpose.DELIVER)
        except NotSendable as exc:
            delivery.reached_out = must_look_up
            session.add(
                ledger.attempt_row(
                    delivery, channel.deliver_action, "rejected", datetime.now(UTC), exc.message
                )
            )
            await ledger.fail(session, prescription, delivery, exc.message)
            log.info("send_refused_locally", prescription_id=str(prescription_id), field=exc.field)
            return SendOutcome("failed", exc.message)
        pharmacy = await session.get(Pharmacy, delivery.pharmacy_id)
        others = await ledger.deliveries_of(session, prescription_id)
        return Claimed(
            delivery_id=delivery.id,
            number=delivery.number,
            channel=channel,
            claim=claim,
            attempt=delivery.attempts_in_series,
            must_look_up=must_look_up,
            destination=channel.destination(pharmacy) if pharmacy else None,
            other_refs=frozenset(
                d.provider_ref for d in others if d.id != delivery.id and d.provider_ref
            ),
            shares_destination=any(
                d.id != delivery.id
                and d.reached_out
                and (d.pharmacy_id, d.channel) == (delivery.pharmacy_id, delivery.channel)
                for d in others
            ),
            prepared=prepared,
        )


async def _record_sending(
    session: AsyncSession, prescription: Prescription, delivery: Delivery
) -> None:
    await record_status(
        session,
        prescription.id,
        Status.SENDING,
        source=Source.WORKER,
        delivery_id=delivery.id,
        prescription=prescription,
    )


async def _record_delivered(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    claimed: Claimed,
    started: datetime,
    *,
    ref: str,
    raw_status: str,
    token: str | None,
    schedule_retry: RetryScheduler,
    job: RunningJob | None,
) -> SendOutcome:
    channel = claimed.channel
    if claimed.record is not None and await common_record.record_delivered(
        runtime, claimed, started, ref=ref, raw_status=raw_status, token=token, job=job
    ):
        return _delivered(prescription_id, claimed, ref, still_wanted=True)
    async with runtime.sessionmaker() as session, session.begin():
        prescription, delivery = await ledger.lock_both(
            session, prescription_id, claimed.delivery_id
        )
        session.add(
            ledger.attempt_row(
                delivery,
                claimed.channel.deliver_action,
                "succeeded",
                started,
                f"delivered as {ref}",
                attempt=claimed.attempt,
            )
        )
        # Already live with this very copy: the platform's webhook (or a run that looked it up)
        # got here before our own answer did. That is the copy we wanted, not a stray one.
        heard_first = delivery.state == DeliveryState.LIVE.value and delivery.provider_ref in (
            None,
            ref,
        )
        still_wanted = heard_first or delivery.state in (
            DeliveryState.PENDING.value,
            DeliveryState.FAILED.value,
        )
        await ledger.observe(
            session,
            prescription,
            delivery,
            channel.delivered_status,
            source=Source.WORKER,
            mirror_ref=channel.polls,
            ref=ref,
            token=token,
            raw_status=raw_status,
        )
        delivery.claim = None
        if not still_wanted:
            # Withdrawn or replaced while the call was in flight: take the new copy back.
            delivery.needs_withdrawal = True
            await schedule_retry(session, prescription_id, 0.0)
    return _delivered(prescription_id, claimed, ref, still_wanted=still_wanted)


def _delivered(
    prescription_id: uuid.UUID, claimed: Claimed, ref: str, *, still_wanted: bool
) -> SendOutcome:
    channel = claimed.channel
    log.info(
        "delivered",
        prescription_id=str(prescription_id),
        delivery=claimed.number,
        ref=ref,
        attempt=claimed.attempt,
        channel=channel.name,
    )
    result = "issued" if channel.delivered_status is Status.ISSUED else "emailed"
    SENDS.labels(channel=channel.name, outcome=result).inc()
    return SendOutcome(result if still_wanted else "withdrawing", ref)


async def _after_retryable(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    claimed: Claimed,
    started: datetime,
    exc: DeliveryRetryable,
    schedule_retry: RetryScheduler,
) -> SendOutcome:
    policy = claimed.channel.retry_policy(runtime.settings)
    outcome = "ambiguous" if exc.ambiguous else "retryable"
    async with runtime.sessionmaker() as session, session.begin():
        prescription, delivery = await ledger.lock_both(
            session, prescription_id, claimed.delivery_id
        )
        session.add(
            ledger.attempt_row(
                delivery,
                claimed.channel.deliver_action,
                outcome,
                started,
                exc.message,
                attempt=claimed.attempt,
            )
        )
        if delivery.state != DeliveryState.PENDING.value or delivery.claim != claimed.claim:
            return SendOutcome("skipped", "the delivery changed while the call was in flight")
        if policy.exhausted(claimed.attempt):
            final = f"not sent after {claimed.attempt} attempts; last error: {exc.message}"
            await ledger.fail(session, prescription, delivery, final)
            log.warning(
                "send_gave_up", prescription_id=str(prescription_id), attempts=claimed.attempt
            )
            gave_up = True
        else:
            gave_up = False
            delay = policy.delay(claimed.attempt, exc.retry_after)
            await schedule_retry(session, prescription_id, delay)
    SENDS.labels(channel=claimed.channel.name, outcome=outcome).inc()
    if gave_up:
        SENDS.labels(channel=claimed.channel.name, outcome="failed").inc()
        return SendOutcome("failed", final)
    log.info(
        "send_retry_scheduled",
        prescription_id=str(prescription_id),
        attempt=claimed.attempt,
        outcome=outcome,
        delay_seconds=delay,
    )
    return SendOutcome("retry", exc.message, retry_in_seconds=delay)


async def _after_rejection(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    claimed: Claimed,
    started: datetime,
    error: DeliveryRejected,
) -> SendOutcome:
    reason = error.message
    async with runtime.sessionmaker() as session, session.begin():
        prescription, delivery = await ledger.lock_both(
            session, prescription_id, claimed.delivery_id
        )
        session.add(
            ledger.attempt_row(
                delivery,
                claimed.channel.deliver_action,
                "rejected",
                started,
                reason,
                attempt=claimed.attempt,
            )
        )
        await ledger.fail(session, prescription, delivery, reason)
        await claimed.channel.record_rejection(session, prescription, delivery, error)
    SENDS.labels(channel=claimed.channel.name, outcome="rejected").inc()
    log.info("send_rejected", prescription_id=str(prescription_id), delivery=claimed.number)
    return SendOutcome("failed", reason)
