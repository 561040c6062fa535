from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
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


class DeliveryState(enum.StrEnum):
    """Where one attempt to get a prescription to one pharmacy stands.

    ``pending``: being sent (or waiting to be); it may already have reached the far side.
    ``live``: the far side holds it (issued on the platform, or emailed).
    ``withdrawn``: cancelled on purpose (voided on the platform / cancellation emailed).
    ``superseded``: replaced by a newer delivery (a re-route or a change of pharmacy).
    ``failed``: the send gave up; it may still have reached the far side (see
    ``reached_out``), which is why a later delivery resolves it first.
    """

    PENDING = "pending"
    LIVE = "live"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"
    FAILED = "failed"


#: The states in which a delivery is the prescription's one open delivery.
OPEN_STATES = (DeliveryState.PENDING.value, DeliveryState.LIVE.value)


class Delivery(IdMixin, TimestampMixin, Base):
    """One attempt to get a prescription to one pharmacy through one channel.

    The database allows at most one open (pending or live) delivery per prescription, so two
    live copies at two pharmacies cannot both be rxroute's current truth. Before a new
    delivery is sent, every earlier one that may have reached the far side
    (``needs_withdrawal``) is resolved: voided on the platform, or a cancellation emailed.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("prescription_id", "number"),
        UniqueConstraint("provider_ref"),
        Index(
            "uq_deliveries_one_open_per_prescription",
            "prescription_id",
            unique=True,
            postgresql_where=text("state IN ('pending', 'live')"),
        ),
        Index(
            "ix_deliveries_needs_withdrawal",
            "prescription_id",
            postgresql_where=text("needs_withdrawal"),
        ),
    )

    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescriptions.id"))
    #: 1, 2, 3... per prescription: "delivery 2" in the support console and references.
    number: Mapped[int] = mapped_column(Integer)
    pharmacy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pharmacies.id"))
    region: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.PENDING.value)
    #: The far side's reference: the platform's prescription ID, or the email's Message-ID.
    provider_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    provider_token: Mapped[str | None] = mapped_column(String(200), default=None)
    #: Region A: the random part of the pharmacy's confirmation link, bound to this delivery.
    link_nonce: Mapped[str | None] = mapped_column(String(64), default=None)
    #: Support's retry starts a fresh series of attempts on the same delivery.
    series: Mapped[int] = mapped_column(Integer, default=1)
    #: Attempts made in the current series: the one attempt counter.
    attempts_in_series: Mapped[int] = mapped_column(Integer, default=0)
    #: Whether any call to the far side was ever started: then it may hold a copy.
    reached_out: Mapped[bool] = mapped_column(Boolean, default=False)
    #: An earlier delivery that may be live on the far side and must be resolved.
    needs_withdrawal: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Fencing: the send job run that owns the delivery now; checked before calling out.
    claim: Mapped[uuid.UUID | None] = mapped_column(default=None)
    #: Who asked for this delivery (a user id) and why (re-route reason), PHI-free.
    actor: Mapped[str | None] = mapped_column(String(100), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    #: Why it stopped being open (superseded by delivery 3, withdrawn: "patient cancelled").
    closed_reason: Mapped[str | None] = mapped_column(Text, default=None)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: The first time this delivery reached the far side (issued or emailed).
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Last time anything was heard from the far side about it (webhook or poll).
    last_heard_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES
