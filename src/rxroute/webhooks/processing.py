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
from rxroute.models import InboundWebhookEvent, Prescription, WebhookEventState
from rxroute.prescriptions.history import lock_prescription, record_status
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


async def find_prescription(
    session: AsyncSession, provider_id: object, client_ref_id: object
) -> Prescription | None:
    """By the platform's id, else by ``client_ref_id`` (which is rxroute's own id).

    A ``client_ref_id`` match that is already issued under a *different* platform id is not
    ours to update: it is another copy of the prescription on the platform (an issue that
    happened twice), and its voiding or expiry must not move the copy rxroute tracks.
    """
    if isinstance(provider_id, str) and provider_id:
        found = await session.scalar(
            select(Prescription).where(Prescription.provider_prescription_id == provider_id)
        )
        if found is not None:
            return found
    if isinstance(client_ref_id, str):
        try:
            key = uuid.UUID(client_ref_id)
        except ValueError:
            return None
        by_ref = await session.get(Prescription, key)
        if (
            by_ref is not None
            and by_ref.provider_prescription_id is not None
            and isinstance(provider_id, str)
            and provider_id
            and by_ref.provider_prescription_id != provider_id
        ):
            log.warning(
                "webhook_for_other_platform_copy",
                prescription_id=str(by_ref.id),
                tracked=by_ref.provider_prescription_id,
                event_platform_id=provider_id,
            )
            return None
        return by_ref
    return None


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
    prescription = await find_prescription(
        session, data.get("prescription_id"), data.get("client_ref_id")
    )
    if prescription is None:
        event.error = (
            f"no prescription with platform id {str(data.get('prescription_id'))[:64]!r} "
            "(nor an unissued one with this client_ref_id)"
        )
        return WebhookEventState.UNKNOWN_PRESCRIPTION.value
    event.prescription_id = prescription.id
    locked = await lock_prescription(session, prescription.id)
    provider_id = data.get("prescription_id")
    if locked.provider_prescription_id is None and isinstance(provider_id, str):
        # The webhook beat our own send job to recording the platform's id.
        locked.provider_prescription_id = provider_id
    locked.last_provider_update_at = datetime.now(UTC)
    occurred_at = _parse_time(data.get("occurred_at")) or _parse_time(payload.get("created_at"))
    await record_status(
        session,
        prescription.id,
        status,
        source=Source.WEBHOOK,
        occurred_at=occurred_at,
        provider_status=str(raw_status),
        provider_event_id=event.provider_event_id,
    )
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
        event.state = await handler(session, event, dict(event.payload))
    event.processed_at = datetime.now(UTC)
    log.info("webhook_processed", event_id=event.provider_event_id, state=event.state)
    return event.state
