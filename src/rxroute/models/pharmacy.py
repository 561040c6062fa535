from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Computed, DateTime, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class Pharmacy(IdMixin, TimestampMixin, Base):
    """An accepted pharmacy in the curated list patients choose from.

    Region A pharmacies need an email (the PDF goes there); Region B ones need the platform's
    contact/branch ID the pharmacy was registered under.
    """

    __tablename__ = "pharmacies"
    __table_args__ = (
        # Type-ahead under three characters and the empty query read these in order and stop
        # after a page (see rxroute.pharmacies.repository); they also serve region lookups.
        Index("ix_pharmacies_region_active_name_key", "region", "active", "name_key"),
        Index("ix_pharmacies_region_active_town_key", "region", "active", "town_key", "name_key"),
        Index("ix_pharmacies_region_active_postcode_key", "region", "active", "postcode_key"),
        Index(
            "ix_pharmacies_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
        Index("uq_pharmacies_code", "code", unique=True, postgresql_where=text("code IS NOT NULL")),
    )

    name: Mapped[str] = mapped_column(String(200))
    address_line1: Mapped[str] = mapped_column(String(200))
    address_line2: Mapped[str] = mapped_column(String(200), default="")
    town: Mapped[str] = mapped_column(String(100))
    postcode: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(8))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    platform_contact_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Shown to patients when known (send form, confirm step); never needed to send.
    phone: Mapped[str | None] = mapped_column(String(40), default=None)
    #: Free text as the pharmacy gives it, e.g. "Mon-Fri 9:00-18:00, Sat 9:00-13:00".
    opening_hours: Mapped[str | None] = mapped_column(String(300), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The pharmacy's own code (NHS ODS code, e.g. ``FA123``): the key a re-imported CSV
    #: list is matched by (:mod:`rxroute.admin.pharmacy_import`).
    code: Mapped[str | None] = mapped_column(String(20), default=None)
    #: The last live check (:mod:`rxroute.admin.health`): ok, warn or fail, when, and why
    #: (ids and pharmacy names only, never PHI). None: never checked.
    health_status: Mapped[str | None] = mapped_column(String(10), default=None)
    health_checked_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    health_detail: Mapped[str | None] = mapped_column(String(500), default=None)
    #: Set when the platform rejected the pharmacy's contact (at a check or a real send):
    #: patients' search leaves it out until an admin clears it.
    withheld_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Lower-cased name, town and postcode (with and without its space), for search.
    search_text: Mapped[str] = mapped_column(
        Text,
        Computed(
            "lower(name || ' ' || town || ' ' || postcode || ' ' || replace(postcode, ' ', ''))",
            persisted=True,
        ),
    )

    #: Lower-cased name, town and postcode without spaces, in the "C" collation: a btree on
    #: them answers a prefix (``LIKE 'ab%'``) and returns rows in order, whatever the
    #: database's default collation (only "C" lets PostgreSQL turn a prefix into a range).
    name_key: Mapped[str] = mapped_column(
        String(200, collation="C"), Computed("lower(name)", persisted=True)
    )
    town_key: Mapped[str] = mapped_column(
        String(100, collation="C"), Computed("lower(town)", persisted=True)
    )
    postcode_key: Mapped[str] = mapped_column(
        String(16, collation="C"), Computed("lower(replace(postcode, ' ', ''))", persisted=True)
    )

    @property
    def full_address(self) -> str:
        return one_line_address(self.address_line1, self.address_line2, self.town, self.postcode)


def one_line_address(line1: str, line2: str, town: str, postcode: str) -> str:
    """The address on one line, empty parts left out: how every page and the API show it."""
    return ", ".join(part for part in (line1, line2, town, postcode) if part)
