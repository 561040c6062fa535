from __future__ import annotations

from sqlalchemy import Boolean, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class FormularyItem(IdMixin, TimestampMixin, Base):
    """One medicine line prescribers pick from, with the defaults their form starts with.

    Unique on the description (case-insensitive) among *active* lines: the description is
    what a prescriber reads and picks, so two active lines with the same one could not be
    told apart. dm+d codes need not be unique: the same product may be listed twice with
    different default quantities or directions (a starting dose and a maintenance dose).
    A line is never deleted or edited in place (prescriptions copy what they used); to change
    one, deactivate it and import the corrected line.

    dm+d codes are optional: a clinic's list may hold appliances it has not coded. An AMP
    (``dmd_apid``) belongs to a VMP, so an APID comes with its VPID.
    """

    __tablename__ = "formulary_items"
    __table_args__ = (
        Index(
            "uq_formulary_items_active_description",
            func.lower(text("description")),
            unique=True,
            postgresql_where=text("active"),
        ),
    )

    description: Mapped[str] = mapped_column(String(500))
    dmd_vpid: Mapped[str | None] = mapped_column(String(18), default=None)
    dmd_apid: Mapped[str | None] = mapped_column(String(18), default=None)
    default_quantity: Mapped[str] = mapped_column(String(100))
    default_directions: Mapped[str] = mapped_column(String(1000))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
