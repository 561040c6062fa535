from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin


class OutboxEvent(IdMixin, Base):
    """One status event for the platform, written in the transaction that moved the status.

    ``body`` is the exact JSON sent (and signed) on every attempt, so a retry or a resend is
    byte-for-byte the same message. ``seq`` orders the events of one prescription: they are
    delivered to each endpoint in that order. Rows whose deliveries are all done are deleted
    after ``RXROUTE_EVENTS_RETENTION_DAYS``.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_prescription_seq", "prescription_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescriptions.id"))
    type: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    previous_status: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    @property
    def message_id(self) -> str:
        """The ``webhook-id``: the same on every attempt, so receivers can drop repeats."""
        return f"evt_{self.id.hex}"
