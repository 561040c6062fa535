"""Turning a stored webhook event into status history.

The provider's vocabulary is mapped at this boundary (``from_provider``, an exhaustive
match). The event's own ``occurred_at`` goes into the history, with source ``webhook``; the
current status only moves forward (a late ``signed`` after ``dispensed`` is recorded at its
true time and changes nothing else).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.erx.status import UnknownProviderStatus, from_provider
from rxroute.channels.registry import ERX
from rxroute.deliveries import ledger
from rxroute.models import Delivery, InboundWebhookEvent, Prescription, WebhookEventState
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.webhooks.registry import handlers

log = structlog.get_logger(__name__)


def _parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def find_delivery(
    session: AsyncSession, provider_id: object, client_ref_id: object
) -> tuple[Prescription | None, Delivery | None]:
    """The delivery an event is about, by the platform's id, else by ``client_ref_id``; with
    its prescription, locked until the transaction ends.

    The common case (a known platform id) is one statement: the delivery, its prescription
    and the lock together. ``client_ref_id`` is rxroute's prescription id, shared by every
    delivery of it. An unknown platform id is attached only when exactly one Region B
    delivery of the prescription has called the platform without learning its id (the
    answer to its issue was lost); with more than one candidate the send job's lookup
    decides, by pharmacy.
    """
    if isinstance(provider_id, str) and provider_id:
        # Only the prescription is locked: the one lock order is prescription, then delivery.
        found = (
            await session.execute(
                select(Prescription, Delivery)
                .join(Delivery, Delivery.prescription_id == Prescription.id)
                .where(Delivery.provider_ref == provider_id)
                .with_for_update(of=Prescription)
                .execution_options(populate_existing=True)
            )
        ).first()
        if found is not None:
            return found.Prescription, found.Delivery
    if not isinstance(client_ref_id, str):
        return None, None
    try:
        key = uuid.UUID(client_ref_id)
    except ValueError:
        return None, None
    prescription = await session.scalar(
        select(Prescription)
        .where(Prescription.id == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if prescription is None:
        return None, None
    candidates = [
        d
        for d in await ledger.deliveries_of(session, key)
        if d.channel == ERX and d.provider_ref is None and d.reached_out
    ]
    if len(candidates) == 1:
        return prescription, candidates[0]
    log.warning(
        "webhook_for_unmatched_platform_copy",
        prescription_id=str(key),
        candidates=len(candidates),
    )
    return prescription, None


def _sending(prescription: Prescription) -> bool:
    return prescription.status in (Status.QUEUED.value, Status.SENDING.value)


async def handle_status_changed(
    session: AsyncSession, event: InboundWebhookEvent, payload: dict[str, Any]
) -> str:
    data = payload.get("data")
    if not isinstance(data, dict):
        event.error = "data: missing or not an object"
        return WebhookEventState.UNKNOWN_TYPE.value
    raw_status = data.get("status")
    try:
        status = Status(from_provider(raw_status if isinstance(raw_status, str) else ""))
    except UnknownProviderStatus:
        event.error = f"unknown provider status {str(raw_status)[:40]!r}"
        return WebhookEventState.UNKNOWN_TYPE.value
    provider_id = data.get("prescription_id")
    prescription, delivery = await find_delivery(session, provider_id, data.get("client_ref_id"))
    if prescription is None:
        event.error = (
            f"no prescription with platform id {str(provider_id)[:64]!r} "
            "(nor one with this client_ref_id)"
        )
        return WebhookEventState.UNKNOWN_PRESCRIPTION.value
    state = await _apply(session, event, prescription, delivery, status, data, payload)
    # Set last, with the rest of the event's outcome: set before the ledger's flushes, the
    # event would be written twice.
    event.prescription_id = prescription.id
    return state


async def _apply(
    session: AsyncSession,
    event: InboundWebhookEvent,
    locked: Prescription,
    delivery: Delivery | None,
    status: Status,
    data: dict[str, Any],
    payload: dict[str, Any],
) -> str:
    """Record the platform's status for a found (and locked) prescription; the event's state."""
    from rxroute.prescriptions.tasks import defer_send

    provider_id = data.get("prescription_id")
    raw_status = data.get("status")
    if delivery is None:
        copy = str(provider_id)[:64]
        if _sending(locked):
            # Sending now: the job's lookup adopts the copy (right pharmacy) or voids it.
            event.error = (
                f"platform copy {copy!r} matches no delivery yet; the send job looks it up"
            )
            await defer_send(session, locked.id)
            return WebhookEventState.PROCESSED.value
        # Another copy of a prescription already delivered: not ours to apply. Support sees it.
        event.error = (
            f"platform copy {copy!r} of this prescription is not the one rxroute tracks "
            f"({locked.provider_prescription_id or 'none'}); void it if it is live"
        )
        return WebhookEventState.UNKNOWN_PRESCRIPTION.value
    occurred_at = _parse_time(data.get("occurred_at")) or _parse_time(payload.get("created_at"))
    await ledger.observe(
        session,
        locked,
        delivery,
        status,
        source=Source.WEBHOOK,
        implies=Status.ISSUED,
        mirror_ref=True,
        ref=provider_id if isinstance(provider_id, str) and provider_id else None,
        raw_status=str(raw_status),
        occurred_at=occurred_at,
        event_id=event.provider_event_id,
    )
    if delivery.needs_withdrawal:
        await defer_send(session, locked.id)
    return WebhookEventState.PROCESSED.value


async def process_event(session: AsyncSession, event_id: uuid.UUID) -> str:
    """Process one stored event; a no-op if it was processed already (safe to run twice)."""
    event = await session.scalar(
        select(InboundWebhookEvent).where(InboundWebhookEvent.id == event_id).with_for_update()
    )
    if event is None:
        return "missing"
    if event.state != WebhookEventState.PENDING.value:
        return event.state
    handler = handlers().get(event.event_type)
    if handler is None:
        event.state = WebhookEventState.UNKNOWN_TYPE.value
        event.error = f"event type {event.event_type[:60]!r} is not handled"
    else:
        # No autoflush: each row is written once, when the rules flush or at commit, not
        # again before every query the handler sends (the prescription and the event were
        # each written twice per event).
        with session.no_autoflush:
            event.state = await handler(session, event, dict(event.payload))
    event.processed_at = datetime.now(UTC)
    log.info("webhook_processed", event_id=event.provider_event_id, state=event.state)
    return event.state
