from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from rxroute.db.base import Base, IdMixin, TimestampMixin
from rxroute.prescriptions.lifecycle import POLLABLE_STATUSES, Status

if TYPE_CHECKING:
    from rxroute.models.patient import Patient
    from rxroute.models.pharmacy import Pharmacy
    from rxroute.models.prescriber import Prescriber
    from rxroute.models.prescription_item import PrescriptionItem


class Prescription(IdMixin, TimestampMixin, Base):
    """A prescription and where it is going.

    ``status`` is a cache of the status derived from ``prescription_status_events``; only
    :mod:`rxroute.prescriptions.history` writes it, in the same transaction as the event.
    """

    __tablename__ = "prescriptions"
    __table_args__ = (
        UniqueConstraint("provider_prescription_id"),
        # Every list reads newest first and stops after a page: the patient's, the
        # prescriber's, and everyone's (support, admin, API clients).
        Index("ix_prescriptions_patient_created", "patient_id", text("created_at DESC"), "id"),
        Index(
            "ix_prescriptions_prescriber_created", "prescriber_id", text("created_at DESC"), "id"
        ),
        Index("ix_prescriptions_created", text("created_at DESC"), "id"),
        # The support console's failed and stuck lists, the orphaned-send sweep, counts.
        Index("ix_prescriptions_status_updated", "status", "updated_at"),
        # Support's search by pharmacy (with or without a status) and by status (migration 0016).
        Index(
            "ix_prescriptions_pharmacy_status_created",
            "pharmacy_id",
            "status",
            text("created_at DESC"),
            "id",
        ),
        Index("ix_prescriptions_status_created", "status", text("created_at DESC"), "id"),
        # Support's "expiring soon": at a pharmacy, oldest first (the statuses are
        # rxroute.support.attention.AT_PHARMACY; change both together).
        Index(
            "ix_prescriptions_at_pharmacy_queued",
            "first_queued_at",
            postgresql_where=text("status IN ('issued', 'signed', 'printed', 'emailed')"),
        ),
        # Reconciliation: in flight on the platform, longest silent first; the backoff
        # column rides along so a backed-off row is skipped from the index entry.
        Index(
            "ix_prescriptions_reconcile",
            func.coalesce(text("last_provider_update_at"), text("updated_at")),
            "reconcile_next_at",
            postgresql_where=text(
                "provider_prescription_id IS NOT NULL AND status IN ("
                + ", ".join(f"'{s.value}'" for s in POLLABLE_STATUSES)
                + ")"
            ),
        ),
        Index(
            "uq_prescriptions_external_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescribers.id"))
    clinic_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clinics.id"), default=None)
    status: Mapped[str] = mapped_column(String(20), default=Status.DRAFT.value)
    #: The patient's choice, recorded when they send.
    region: Mapped[str | None] = mapped_column(String(8), default=None)
    channel: Mapped[str | None] = mapped_column(String(20), default=None)
    pharmacy_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pharmacies.id"), default=None)
    #: The integrating platform's own ID for it (echoed in status events); unique when set.
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    #: The platform's prescription ID (e.g. SRXC49F3D4F66A7) and its secure token.
    provider_prescription_id: Mapped[str | None] = mapped_column(String(64), default=None)
    provider_token: Mapped[str | None] = mapped_column(String(200), default=None)
    notes: Mapped[str] = mapped_column(Text, default="")
    #: Why the last send failed, in words support and the patient can act on. No PHI.
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    #: When we last heard anything from the platform about it (webhook or poll).
    last_provider_update_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    #: Reconciliation polls that failed in a row; the backoff doubles with each (reset on success).
    reconcile_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: After a failed poll, not polled again before this (None: due once quiet long enough).
    reconcile_next_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    #: The delivery the current status is derived from (the open one, else the latest). A
    #: cache kept by :mod:`rxroute.deliveries.ledger` in the same transaction as the change.
    current_delivery_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    #: When it was first queued: the issue date printed on the Region A PDF, on every copy.
    first_queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: A copy of the patient's ``name_search`` that triggers keep (migration 0019), so
    #: support's search by a common name walks prescriptions newest first without looking
    #: up each one's patient. PHI, and never written here: deferred, so never loaded.
    patient_name_search: Mapped[str] = mapped_column(Text, deferred=True)

    items: Mapped[list[PrescriptionItem]] = relationship(
        back_populates="prescription",
        order_by="PrescriptionItem.position",
        cascade="all, delete-orphan",
        lazy="raise",
    )
    patient: Mapped[Patient] = relationship(lazy="raise")
    prescriber: Mapped[Prescriber] = relationship(lazy="raise")
    pharmacy: Mapped[Pharmacy | None] = relationship(lazy="raise")

    @property
    def current_status(self) -> Status:
        return Status(self.status)
