from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin
from rxroute.prescriptions.lifecycle import FAR_SIDE_STATUSES


class PrescriptionStatusEvent(IdMixin, Base):
    """One line of a prescription's status history. Append-only.

    A database trigger (see the first migration) refuses UPDATE and DELETE. ``occurred_at``
    is when it happened (the platform's time for webhooks), ``recorded_at`` when we learned
    it; ``seq`` is the order we learned things in, which the current status is derived from.
    Each platform status is recorded at most once per delivery (partial unique index),
    so a duplicate webhook or a poll that repeats a webhook adds nothing.
    """

    __tablename__ = "prescription_status_events"
    __table_args__ = (
        Index("ix_prescription_status_events_prescription_seq", "prescription_id", "seq"),
        Index(
            "uq_prescription_status_events_provider_status_once",
            "delivery_id",
            "status",
            unique=True,
            postgresql_where=text(
                "delivery_id IS NOT NULL AND status IN ("
                + ", ".join(f"'{s.value}'" for s in sorted(FAR_SIDE_STATUSES))
                + ")"
            ),
        ),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescriptions.id"))
    #: The delivery this fact is about; empty for facts about the prescription itself (a
    #: draft cancelled before any delivery). The current status is derived from the current
    #: delivery's facts only.
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deliveries.id"), default=None)
    status: Mapped[str] = mapped_column(String(20))
    #: The provider's own word for it, unmapped (e.g. "dispensed"), when it came from them.
    provider_status: Mapped[str | None] = mapped_column(String(40), default=None)
    source: Mapped[str] = mapped_column(String(20))
    #: Who did it: a user id for patient/support actions, else empty.
    actor: Mapped[str | None] = mapped_column(String(100), default=None)
    provider_event_id: Mapped[str | None] = mapped_column(String(200), default=None)
    #: Short, PHI-free explanation (failure reason, support note).
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
