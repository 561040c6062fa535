from __future__ import annotations

from sqlalchemy import Boolean, Computed, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class Pharmacy(IdMixin, TimestampMixin, Base):
    """An accepted pharmacy in the curated list patients choose from.

    Region A pharmacies need an email (the PDF goes there); Region B ones need the platform's
    contact/branch ID the pharmacy was registered under.
    """

    __tablename__ = "pharmacies"
    __table_args__ = (
        Index("ix_pharmacies_region_active", "region", "active"),
        Index(
            "ix_pharmacies_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )

    name: Mapped[str] = mapped_column(String(200))
    address_line1: Mapped[str] = mapped_column(String(200))
    address_line2: Mapped[str] = mapped_column(String(200), default="")
    town: Mapped[str] = mapped_column(String(100))
    postcode: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(8))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    platform_contact_id: Mapped[int | None] = mapped_column(Integer, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Lower-cased name, town and postcode (with and without its space), for search.
    search_text: Mapped[str] = mapped_column(
        Text,
        Computed(
            "lower(name || ' ' || town || ' ' || postcode || ' ' || replace(postcode, ' ', ''))",
            persisted=True,
        ),
    )

    @property
    def full_address(self) -> str:
        parts = [self.address_line1, self.address_line2, self.town, self.postcode]
        return ", ".join(part for part in parts if part)
