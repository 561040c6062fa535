from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Computed, Date, DateTime, Index, String, Text, false, func, text
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class Patient(IdMixin, TimestampMixin, Base):
    """A patient's profile. Everything here is PHI: never log it, only the id."""

    __tablename__ = "patients"
    __table_args__ = (
        Index(
            "uq_patients_external_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        # Support and prescribers look patients up by email, case-insensitively.
        Index("ix_patients_lower_email", func.lower(text("email"))),
        # Support searches by part of a name (trigram) and by date of birth (migration 0016).
        Index(
            "ix_patients_name_search_trgm",
            "name_search",
            postgresql_using="gin",
            postgresql_ops={"name_search": "gin_trgm_ops"},
        ),
        Index("ix_patients_date_of_birth", "date_of_birth"),
    )

    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[date] = mapped_column(Date)
    gender: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str] = mapped_column(String(40), default="")
    address_line1: Mapped[str] = mapped_column(String(200), default="")
    address_line2: Mapped[str] = mapped_column(String(200), default="")
    town: Mapped[str] = mapped_column(String(100), default="")
    postcode: Mapped[str] = mapped_column(String(16), default="")
    country: Mapped[str] = mapped_column(String(2), default="GB")
    region: Mapped[str] = mapped_column(String(8))
    nhs_number: Mapped[str | None] = mapped_column(String(10), default=None)
    #: The integrating platform's own ID for this patient (``PUT /api/v1/patients/{id}``).
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    #: The patient asked (through the link in an email) to get no more status emails.
    notifications_opt_out: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    notifications_opt_out_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )

    #: "first last", lower-cased and stored, for support's search by name.
    name_search: Mapped[str] = mapped_column(
        Text, Computed("lower(first_name || ' ' || last_name)", persisted=True)
    )

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"
