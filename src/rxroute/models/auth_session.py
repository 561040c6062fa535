from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin


class SessionKind(enum.StrEnum):
    PAGE = "page"  # the browser's cookie
    API = "api"  # a bearer token from POST /api/v1/auth/token


class RevokeReason(enum.StrEnum):
    SIGNED_OUT = "signed_out"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a reason, not a secret
    DEACTIVATED = "deactivated"
    SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"


class AuthSession(IdMixin, Base):
    """One sign-in: a page cookie or an API token names this row, checked on every request.

    Revoking the row (sign-out, password change, deactivation, an admin's "sign out
    everywhere") ends the session at once, however long its signed token would still be
    valid. Looked up by primary key, so the check per request is one indexed read.
    """

    __tablename__ = "auth_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(40), default=None)
