from __future__ import annotations

import enum
import uuid

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class Role(enum.StrEnum):
    PATIENT = "patient"
    SUPPORT = "support"
    ADMIN = "admin"
    PRESCRIBER = "prescriber"


class User(IdMixin, TimestampMixin, Base):
    """Someone who signs in. Passwords are argon2 hashes."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id"), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: For ``role=prescriber``: the prescriber record this person writes prescriptions as.
    prescriber_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("prescribers.id"), default=None
    )
