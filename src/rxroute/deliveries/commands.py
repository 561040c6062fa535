"""What patients, support and platforms ask for: send, re-route, cancel, void, retry.

Each command checks the rules, changes the ledger and queues the send job in the caller's
transaction (services never commit). Voiding and cancelling a delivery that may be on the
platform take it back *first*, outside any transaction, and record what the platform said:
the prescription shows "cancelled" only once nothing live is left.

A platform's API key (:class:`ApiClient`) acts on the patient's behalf: the patient's rules
and answers (no reason required), recorded with its own source (``api``) and actor
(``api:<client name>``, no PHI) so the history says who asked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.registry import get_channel
from rxroute.deliveries import ledger
from rxroute.deliveries.withdrawing import RequestedBy, resolve_withdrawals
from rxroute.models import ApiClient, DeliveryState, Pharmacy, Prescription, User
from rxroute.prescriptions import repository
from rxroute.prescriptions.errors import (
    ChannelRefused,
    ChannelUnavailable,
    Conflict,
    InvalidChoice,
    NotFound,
)
from rxroute.prescriptions.history import lock_prescription, record_status
from rxroute.prescriptions.lifecycle import NOT_SENDABLE, Source, Status
from rxroute.prescriptions.repository import Requester
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)

MAX_REASON = 500


#: The history's ``actor`` column holds at most this many characters.
MAX_ACTOR = 100


def source_for(user: Requester) -> Source:
    if isinstance(user, ApiClient):
        return Source.API
    return Source.PATIENT if user.role == "patient" else Source.SUPPORT


def actor_for(user: Requester) -> str:
    """The history's actor: a user's id, or ``api:<client name>`` for a platform's key."""
    if isinstance(user, ApiClient):
        return f"api:{user.name}"[:MAX_ACTOR]
    return str(user.id)


def _needs_reason(user: Requester) -> bool:
    """Support must say why it changes a prescription; the patient (or their platform) not."""
    return source_for(user) is Source.SUPPORT


@dataclass(frozen=True)
class Destination:
    region: str
    channel: str
    pharmacy: Pharmacy


async def choose_destination(
    session: AsyncSession, runtime: Runtime, region: str | None, pharmacy_id: uuid.UUID | None
) -> Destination:
    """The region's channel and an active pharmacy it can reach; 422 naming the field."""
    settings = runtime.settings
    if not region or not region.strip():
        raise InvalidChoice("region: choose the patient's region", field="region")
    code = region.strip().upper()
    channel_name = settings.channel_for_region(code)
    if channel_name is None:
        served = ", ".join(sorted(settings.region_channels))
        raise InvalidChoice(f"region: {code!r} is not served; use one of {served}", field="region")
    if pharmacy_id is None:
        raise InvalidChoice("pharmacy_id: choose a pharmacy", field="pharmacy_id")
    pharmacy = await session.get(Pharmacy, pharmacy_id)
    if pharmacy is None or not pharmacy.active:
        raise InvalidChoice(
            "pharmacy_id: no active accepted pharmacy has this id", field="pharmacy_id"
        )
    if pharmacy.region != code:
        raise InvalidChoice(
            f"pharmacy_id: this pharmacy is in region {pharmacy.region}, not {code}; "
            "choose one from the region's list",
            field="pharmacy_id",
        )
    problem = get_channel(runtime, channel_name).pharmacy_problem(pharmacy)
    if problem is not None:
        raise InvalidChoice(f"pharmacy_id: {problem}", field="pharmacy_id")
    return Destination(code, channel_name, pharmacy)


def _reason(raw: str | None, *, required: bool) -> str | None:
    text = " ".join((raw or "").split())[:MAX_REASON]
    if required and not text:
        raise InvalidChoice("reason: say why, in a few words", field="reason")
    return text or None


async def _visible_locked(
    session: AsyncSession, user: Requester, prescription_id: uuid.UUID
) -> Prescription:
    prescription = await repository.get_visible(session, user, prescription_id, for_update=True)
    if prescription is None:
        raise NotFound("prescription not found")
    return prescription


async def _reloaded(
    session: AsyncSession, user: Requester, prescription_id: uuid.UUID
) -> Prescription:
    """The row as committed (server-set columns included), safe to read after the session."""
    loaded = await repository.get_visible(session, user, prescription_id)
    assert loaded is not None
    return loaded


async def request_send(
    session: AsyncSession,
    runtime: Runtime,
    user: Requester,
    prescription_id: uuid.UUID,
    *,
    region: str | None,
    pharmacy_id: uuid.UUID | None,
) -> Prescription:
    """Send a draft, or send a failed one again (same pharmacy: a fresh series).

    The caller defers the send job in the same transaction, so a queued prescription always
    has a job and a job always has its prescription.
    """
    prescription = await _visible_locked(session, user, prescription_id)
    current = Status(prescription.status)
    if current in NOT_SENDABLE:
        raise Conflict(
            f"this prescription is already {current.value} ({current.label.lower()}); "
            "it cannot be sent again"
        )
    destination = await choose_destination(session, runtime, region, pharmacy_id)
    if not prescription.items:
        raise InvalidChoice("items: the prescription has no items to send", field="items")
    delivery = await ledger.current_delivery(session, prescription)
    if (
        delivery is not None
        and delivery.state == DeliveryState.FAILED.value
        and delivery.pharmacy_id == destination.pharmacy.id
        and delivery.channel == destination.channel
    ):
        await ledger.start_series(
            session,
            prescription,
            delivery,
            source=source_for(user),
            actor=actor_for(user),
            detail="sent again to the same pharmacy",
        )
        return prescription
    await ledger.open_delivery(
        session,
        prescription,
        pharmacy=destination.pharmacy,
        region=destination.region,
        channel=destination.channel,
        source=source_for(user),
        actor=actor_for(user),
        reason="sent again to another pharmacy" if delivery is not None else None,
    )
    return prescription


async def reroute(
    session: AsyncSession,
    runtime: Runtime,
    user: Requester,
    prescription_id: uuid.UUID,
    *,
    region: str | None,
    pharmacy_id: uuid.UUID | None,
    reason: str | None,
) -> Prescription:
    """Send it to another pharmacy (or region) instead; earlier deliveries are withdrawn first."""
    prescription = await _visible_locked(session, user, prescription_id)
    current = Status(prescription.status)
    if current.is_final:
        raise Conflict(
            f"this prescription is {current.value} ({current.label.lower()}); it cannot be "
            "re-routed"
        )
    if current is Status.DRAFT:
        raise Conflict("this prescription has not been sent yet; send it instead")
    why = _reason(reason, required=_needs_reason(user))
    destination = await choose_destination(session, runtime, region, pharmacy_id)
    delivery = await ledger.current_delivery(session, prescription)
    if (
        delivery is not None
        and delivery.is_open
        and delivery.pharmacy_id == destination.pharmacy.id
        and delivery.channel == destination.channel
    ):
        raise Conflict("the prescription is already going to this pharmacy")
    await ledger.open_delivery(
        session,
        prescription,
        pharmacy=destination.pharmacy,
        region=destination.region,
        channel=destination.channel,
        source=source_for(user),
        actor=actor_for(user),
        reason=why or "changed pharmacy",
    )
    log.info("prescription_rerouted", prescription_id=str(prescription_id), actor=actor_for(user))
    return prescription


async def retry(
    session: AsyncSession, user: User, prescription_id: uuid.UUID, *, reason: str | None = None
) -> Prescription:
    """Support: send a failed delivery again, as a fresh series of attempts.

    ``reason`` (what support changed or checked first) goes into the history with the retry.
    """
    found = await session.get(Prescription, prescription_id)
    if found is None:
        raise NotFound("prescription not found")
    prescription = await lock_prescription(session, prescription_id)
    current = Status(prescription.status)
    if current is not Status.FAILED:
        raise Conflict(
            f"only a failed send can be retried; this prescription is {current.value} "
            f"({current.label.lower()})"
        )
    delivery = await ledger.current_delivery(session, prescription)
    if delivery is None:
        raise Conflict("this prescription has no region and pharmacy chosen, so it cannot be sent")
    previous_reason = prescription.failure_reason
    why = _reason(reason, required=False)
    await ledger.start_series(
        session,
        prescription,
        delivery,
        source=Source.SUPPORT,
        actor=str(user.id),
        detail="send retried by support"
        + (f": {why}" if why else "")
        + (f" (after: {previous_reason[:300]})" if previous_reason else ""),
    )
    log.info("support_retry_send", prescription_id=str(prescription_id), actor=str(user.id))
    return prescription


async def cancel(
    runtime: Runtime, user: Requester, prescription_id: uuid.UUID, *, reason: str | None
) -> Prescription:
    """Patient's cancel and support's void: take every live copy back, then say so.

    Owns its transactions: the far side is asked outside any of them.
    """
    from rxroute.prescriptions.tasks import defer_send

    source = source_for(user)
    async with runtime.sessionmaker() as session, session.begin():
        prescription = await _visible_locked(session, user, prescription_id)
        current = Status(prescription.status)
        if current is Status.DISPENSED:
            raise ChannelRefused(
                "this prescription has already been dispensed, so it cannot be cancelled"
            )
        if current.is_final:
            raise Conflict(f"this prescription is already {current.value}")
        why = _reason(reason, required=_needs_reason(user)) or (
            "cancelled by the patient"
            if source is Source.PATIENT
            else f"cancelled through the API ({actor_for(user)})"
        )
        delivery = await ledger.current_delivery(session, prescription)
        previous_state = delivery.state if delivery else None
        waits_for_far_side = False
        if (delivery is not None and delivery.is_open) or (
            delivery is not None and delivery.state == DeliveryState.FAILED.value
        ):
            assert delivery is not None
            ledger.close(delivery, DeliveryState.WITHDRAWN, why)
            await session.flush()
            can_look_up = get_channel(runtime, delivery.channel).polls
            waits_for_far_side = delivery.needs_withdrawal and can_look_up
        if not waits_for_far_side:
            await record_status(
                session,
                prescription.id,
                Status.VOIDED,
                source=source,
                actor=actor_for(user),
                detail=why,
                prescription=prescription,
            )
            if delivery is not None and delivery.needs_withdrawal:
                await defer_send(session, prescription.id)
            log.info("prescription_cancelled", prescription_id=str(prescription_id))
            return await _reloaded(session, user, prescription_id)
        assert delivery is not None
        delivery_id = delivery.id

    result = await resolve_withdrawals(
        runtime, prescription_id, requested_by=RequestedBy(source, actor_for(user), why)
    )
    async with runtime.sessionmaker() as session, session.begin():
        prescription = await lock_prescription(session, prescription_id)
        delivery = await ledger.get_delivery(session, delivery_id, for_update=True)
        if result.done:
            await record_status(
                session,
                prescription.id,
                Status.VOIDED,
                source=source,
                delivery_id=delivery.id,
                actor=actor_for(user),
                detail=why,
                prescription=prescription,
            )
            log.info("prescription_cancelled", prescription_id=str(prescription_id))
            return await _reloaded(session, user, prescription_id)
        if delivery.state == DeliveryState.WITHDRAWN.value and previous_state is not None:
            # Nothing changed on the far side: put the delivery back as it was.
            delivery.state = previous_state
            delivery.needs_withdrawal = False
            delivery.closed_reason = None
            delivery.closed_at = None
            if previous_state == DeliveryState.PENDING.value:
                await defer_send(session, prescription.id)
    if result.dispensed:
        raise ChannelRefused(
            f"the pharmacy has already dispensed this prescription, so it cannot be cancelled "
            f"({result.blocked})"
        )
    if result.blocked is not None:
        raise ChannelRefused(f"the platform refused: {result.blocked}")
    raise ChannelUnavailable(
        "the platform could not be reached; nothing was changed, try again in a minute"
    )
