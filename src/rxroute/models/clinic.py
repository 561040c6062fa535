from __future__ import annotations

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class Clinic(IdMixin, TimestampMixin, Base):
    """A clinic as registered on a provider's platform.

    The platform knows a clinic by two numbers (case study, lesson 2): the *internal API ID*
    every API call must carry (e.g. 994) and the *dashboard display ID* its web pages show
    (e.g. 201334). Sending the display ID fails with "unauthorized clinic". Both are stored,
    under names nobody can confuse.
    """

    __tablename__ = "clinics"
    __table_args__ = (
        UniqueConstraint("provider", "api_internal_id"),
        UniqueConstraint("provider", "dashboard_display_id"),
    )

    provider: Mapped[str] = mapped_column(String(40), default="signaturerx")
    name: Mapped[str] = mapped_column(String(200))
    api_internal_id: Mapped[int] = mapped_column(Integer)
    dashboard_display_id: Mapped[str] = mapped_column(String(40))
