from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from rxroute.db.base import Base, IdMixin, TimestampMixin

if TYPE_CHECKING:
    from rxroute.models.prescription import Prescription


class PrescriptionItem(IdMixin, TimestampMixin, Base):
    """One medicine on a prescription; dm+d codes (VPID/APID) are optional."""

    __tablename__ = "prescription_items"

    prescription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("prescriptions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[str] = mapped_column(String(100))
    directions: Mapped[str] = mapped_column(String(1000))
    dmd_vpid: Mapped[str | None] = mapped_column(String(32), default=None)
    dmd_apid: Mapped[str | None] = mapped_column(String(32), default=None)

    prescription: Mapped[Prescription] = relationship(back_populates="items", lazy="raise")
