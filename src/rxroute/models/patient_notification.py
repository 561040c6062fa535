from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class NotificationState(enum.StrEnum):
    """Where one email to a patient stands.

    ``pending``: its job will send it (or retry it); ``sent``: the SMTP relay took it;
    ``skipped``: not sent on purpose (the patient opted out, or has no email address);
    ``failed``: the relay refused it for good, or every retry was used up.
    """

    PENDING = "pending"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class PatientNotification(IdMixin, TimestampMixin, Base):
    """One email telling a patient that their prescription's status changed.

    Written in the transaction that moved the status (see
    :mod:`rxroute.notifications.service`), at most once per prescription, delivery and kind
    (unique index, NULL delivery included): a status move repeated or replayed does not
    email twice. No message text is stored: it is composed when sent, and errors hold the
    relay's code and stage only, never an address.
    """

    __tablename__ = "patient_notifications"
    __table_args__ = (
        Index(
            "uq_patient_notifications_once",
            "prescription_id",
            "delivery_id",
            "kind",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        Index("ix_patient_notifications_patient_id", "patient_id"),
        Index(
            "ix_patient_notifications_pending",
            "prescription_id",
            "status_event_seq",
            postgresql_where=text("state = 'pending'"),
        ),
    )

    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescriptions.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deliveries.id"), default=None)
    #: A :class:`rxroute.notifications.kinds.Kind` value.
    kind: Mapped[str] = mapped_column(String(20))
    #: The history line whose status move this announces (places it in the timeline).
    status_event_seq: Mapped[int | None] = mapped_column(BigInteger, default=None)
    state: Mapped[str] = mapped_column(String(20), default=NotificationState.PENDING.value)
    #: Why it was skipped (``opted_out``, ``no_email``).
    skip_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: After a temporary failure: not tried again before this (its retry job is due then).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    message_id: Mapped[str | None] = mapped_column(String(300), default=None)
