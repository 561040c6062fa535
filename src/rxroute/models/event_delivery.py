from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class EventDeliveryState(enum.StrEnum):
    """``pending``: not tried yet (or asked again by support). ``failing``: the last attempt
    failed; retried at ``next_attempt_at``, or, when that is empty, given up after the whole
    retry schedule (support's resend starts it again). ``delivered``: a 2xx answer."""

    PENDING = "pending"
    FAILING = "failing"
    DELIVERED = "delivered"


class EventDelivery(IdMixin, TimestampMixin, Base):
    """One event on its way to one endpoint.

    ``prescription_id`` and ``event_seq`` repeat the event's, so the next delivery due for an
    (endpoint, prescription) stream is one index lookup: the undelivered one with the lowest
    ``event_seq``. Nothing later in a stream is sent while an earlier one is undelivered.
    ``last_error`` holds an HTTP status or an exception class, never a response body.
    """

    __tablename__ = "event_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        Index(
            "ix_event_deliveries_undelivered_stream",
            "endpoint_id",
            "prescription_id",
            "event_seq",
            postgresql_where=text("state <> 'delivered'"),
        ),
        Index("ix_event_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("event_endpoints.id"))
    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescriptions.id"))
    event_seq: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(20), default=EventDeliveryState.PENDING.value)
    #: Attempts since the delivery was created or last resent: the one retry counter.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Support's resends: how many, and who asked last and when.
    resend_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resend_requested_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id"), default=None
    )
    resend_requested_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )

    @property
    def gave_up(self) -> bool:
        """Failed on every attempt of the retry schedule; waits for support's resend."""
        return self.state == EventDeliveryState.FAILING.value and self.next_attempt_at is None
