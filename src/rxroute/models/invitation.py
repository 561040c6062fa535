from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin


class InvitationPurpose(enum.StrEnum):
    #: A new account's first password (the account becomes active when it is set).
    INVITE = "invite"
    #: A new password for an existing account (an admin's "reset password").
    RESET = "reset"


class Invitation(IdMixin, Base):
    """A one-time, expiring set-password link sent to a user by email.

    Only the SHA-256 of the link's token is stored: someone reading the table (or a backup)
    cannot use a link. A link is live while it is unused, not revoked and not expired;
    issuing a new one revokes the user's earlier live links, and a partial unique index
    keeps at most one live link per user even if two are issued at once.
    """

    __tablename__ = "invitations"
    __table_args__ = (
        Index(
            "uq_invitations_live_user",
            "user_id",
            unique=True,
            postgresql_where=text("used_at IS NULL AND revoked_at IS NULL"),
        ),
    )

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Set when a newer link, a deactivation or a password set by another link replaced it.
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: The admin who asked for it; None when the platform asked through the API.
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
