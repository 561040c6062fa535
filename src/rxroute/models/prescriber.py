from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class Prescriber(IdMixin, TimestampMixin, Base):
    """A doctor who signs prescriptions.

    Platform credentials and the 6-digit signing PIN are stored encrypted
    (:class:`rxroute.crypto.SecretBox`) and are never returned by any API: the ``*_encrypted``
    columns hold Fernet tokens, not the values.
    """

    __tablename__ = "prescribers"
    __table_args__ = (
        Index(
            "uq_prescribers_external_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
    )

    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    registration_number: Mapped[str] = mapped_column(String(40))
    platform_email_encrypted: Mapped[str | None] = mapped_column(String(1000), default=None)
    platform_password_encrypted: Mapped[str | None] = mapped_column(String(1000), default=None)
    signing_pin_encrypted: Mapped[str | None] = mapped_column(String(1000), default=None)
    #: The platform's own id for this prescriber, learned at login.
    platform_prescriber_id: Mapped[int | None] = mapped_column(Integer, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The integrating platform's own ID for this prescriber (prescription bodies may use it).
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    #: The last live check of the platform account (:mod:`rxroute.admin.health`), or the
    #: platform's last refusal of a send for an account reason: ok, warn or fail, when, why.
    health_status: Mapped[str | None] = mapped_column(String(10), default=None)
    health_checked_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    health_detail: Mapped[str | None] = mapped_column(String(500), default=None)

    @property
    def has_platform_credentials(self) -> bool:
        return bool(
            self.platform_email_encrypted
            and self.platform_password_encrypted
            and self.signing_pin_encrypted
        )
