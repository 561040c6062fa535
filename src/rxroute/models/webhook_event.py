from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin


class WebhookEventState(enum.StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    #: Verified, but about a prescription we do not know: kept for support, never dropped.
    UNKNOWN_PRESCRIPTION = "unknown_prescription"
    #: Verified, but an event type or status we do not handle: kept and flagged.
    UNKNOWN_TYPE = "unknown_type"
    FAILED = "failed"


class InboundWebhookEvent(IdMixin, Base):
    """A verified webhook, stored before it is processed.

    Unique per (provider, provider event id): the sender retries, and a retry must not be
    processed twice. Rows are kept for ``RXROUTE_WEBHOOK_EVENT_RETENTION_DAYS``, far longer
    than the sender's retry horizon.
    """

    __tablename__ = "inbound_webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        Index("ix_inbound_webhook_events_state", "state"),
    )

    provider: Mapped[str] = mapped_column(String(40))
    provider_event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    prescription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("prescriptions.id"), default=None, index=True
    )
    state: Mapped[str] = mapped_column(String(30), default=WebhookEventState.PENDING.value)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
