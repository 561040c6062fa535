from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from rxroute.db.base import Base, IdMixin


class WebhookEventState(enum.StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    #: Verified, but about a prescription we do not know: kept for support, never dropped.
    UNKNOWN_PRESCRIPTION = "unknown_prescription"
    #: Verified, but an event type or status we do not handle: kept and flagged.
    UNKNOWN_TYPE = "unknown_type"
    #: Processing raised on its last attempt (a dead letter): support may reprocess it.
    FAILED = "failed"


class InboundWebhookEvent(IdMixin, Base):
    """A verified webhook, stored before it is processed.

    Unique per (provider, provider event id): the sender retries, and a retry must not be
    processed twice. Rows are kept for ``RXROUTE_WEBHOOK_EVENT_RETENTION_DAYS``, far longer
    than the sender's retry horizon.

    A dead letter (``failed``) keeps the error's type, a PHI-free message and how many
    attempts were made; a support reprocess clears them and counts the request with who
    asked and when (the platform answered 200 long ago, so nobody else will send it again).
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
    #: PHI-free: ids, counts and exception class names only, never the payload.
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: The exception class that failed the last attempt of a dead letter.
    error_type: Mapped[str | None] = mapped_column(String(100), default=None)
    #: Processing attempts made when the event was marked failed.
    attempts: Mapped[int | None] = mapped_column(Integer, default=None)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    reprocess_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reprocess_requested_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id"), default=None
    )
    reprocess_requested_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )

    @hybrid_property
    def pending_since(self) -> datetime:
        """When it last became pending: received, or re-queued by support."""
        return self.reprocess_requested_at or self.received_at

    @pending_since.inplace.expression
    @classmethod
    def _pending_since_expression(cls) -> ColumnElement[datetime]:
        return func.coalesce(cls.reprocess_requested_at, cls.received_at)
