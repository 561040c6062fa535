"""Webhook payloads leave the database after their retention period, once processed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.db import purge
from rxroute.models import InboundWebhookEvent, WebhookEventState
from rxroute.runtime import Runtime
from rxroute.webhooks.tasks import purge_webhook_events


def _event(name: str, state: WebhookEventState, age_days: float) -> InboundWebhookEvent:
    return InboundWebhookEvent(
        provider="signaturerx",
        provider_event_id=name,
        event_type="prescription.signed",
        payload={"id": name},
        state=state.value,
        received_at=datetime.now(UTC) - timedelta(days=age_days),
    )


async def test_old_processed_events_are_purged_others_kept(
    db: Runtime, session: AsyncSession
) -> None:
    days = db.settings.webhook_event_retention_days
    session.add_all(
        [
            _event("old-processed-1", WebhookEventState.PROCESSED, days + 1),
            _event("old-processed-2", WebhookEventState.PROCESSED, days + 5),
            _event("recent-processed", WebhookEventState.PROCESSED, days - 1),
            # Support still needs these: a dead letter and one not yet processed.
            _event("old-failed", WebhookEventState.FAILED, days + 5),
            _event("old-pending", WebhookEventState.PENDING, days + 5),
        ]
    )
    await session.commit()

    assert await purge_webhook_events(timestamp=0) == 2

    async with db.sessionmaker() as check:
        left = set(await check.scalars(select(InboundWebhookEvent.provider_event_id)))
    assert left == {"recent-processed", "old-failed", "old-pending"}


async def test_a_backlog_is_purged_in_batches(db: Runtime, session: AsyncSession) -> None:
    days = db.settings.webhook_event_retention_days
    session.add_all(_event(f"old-{n}", WebhookEventState.PROCESSED, days + 1) for n in range(7))
    await session.commit()
    cutoff = datetime.now(UTC) - timedelta(days=days)
    purged = await purge.delete_in_batches(
        db.sessionmaker,
        InboundWebhookEvent,
        InboundWebhookEvent.received_at < cutoff,
        batch=3,
    )
    assert purged == 7
    async with db.sessionmaker() as check:
        assert list(await check.scalars(select(InboundWebhookEvent.id))) == []
