from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin


class IdempotencyKey(IdMixin, Base):
    """The answer a POST with an ``Idempotency-Key`` gave, kept to replay it.

    Unique per (API client, key): two platforms may pick the same key. Written in the same
    transaction as the effect it records (see :mod:`rxroute.idempotency`), so a row exists
    exactly when the effect does. ``fingerprint`` is the SHA-256 of method, path and
    canonical JSON body; the request body itself is not kept. The stored answer is PHI (a
    prescription's items), like the rows it describes, and is deleted with the key after
    ``RXROUTE_IDEMPOTENCY_RETENTION_HOURS``.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("client_id", "key"),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_clients.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    #: The JSON answer exactly as sent, so a replay is byte for byte the same.
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
