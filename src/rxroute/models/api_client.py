from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin, TimestampMixin


class ApiClient(IdMixin, TimestampMixin, Base):
    """A service account of an integrating platform, with one API key and its scopes.

    Only the key's SHA-256 is stored (``key_hash``): the key is shown once, when it is made.
    A key is 32 random bytes, so a plain hash is enough (no password-style stretching) and
    lets a request find its client with one indexed lookup. ``key_prefix`` is the key's
    first characters, shown in lists so people can tell keys apart.
    """

    __tablename__ = "api_clients"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    @property
    def active(self) -> bool:
        return self.revoked_at is None
