from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin


class DeliveryAttempt(IdMixin, Base):
    """One try at handing a prescription to its channel: what, when, and how it went.

    ``error`` is PHI-free (ids and the platform's message only).
    """

    __tablename__ = "delivery_attempts"

    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescriptions.id"), index=True)
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("deliveries.id"), default=None, index=True
    )
    #: The delivery's series this attempt belongs to (support's retry starts a new one).
    series: Mapped[int] = mapped_column(Integer, default=1)
    channel: Mapped[str] = mapped_column(String(20))
    #: issue, lookup, void, email, resend, cancel ...
    action: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    #: succeeded, retryable, ambiguous, rejected, found, not_found
    outcome: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
