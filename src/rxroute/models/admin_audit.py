from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rxroute.db.base import Base, IdMixin


class AuditEntity(enum.StrEnum):
    PHARMACY = "pharmacy"
    PRESCRIBER = "prescriber"
    USER = "user"
    #: A line of the formulary prescribers pick medicines from.
    FORMULARY = "formulary"
    #: An integrating platform's service account and its API key.
    API_CLIENT = "api_client"


class AuditAction(enum.StrEnum):
    CREATED = "created"
    #: Created by a CSV import (one event per imported pharmacy or formulary line).
    IMPORTED = "imported"
    UPDATED = "updated"
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"
    #: A staff or patient account created and its set-password link emailed.
    INVITED = "invited"
    INVITE_RESENT = "invite-resent"
    #: The password made unusable, the account's sessions ended, a new link emailed.
    PASSWORD_RESET = "password-reset"  # noqa: S105 - an action's name, not a secret
    #: Every session of the account ended by an admin.
    SIGNED_OUT = "signed-out"

    #: An API client got a new key (the old one stopped working).
    ROTATED = "rotated"
    #: An API client's key was revoked.
    REVOKED = "revoked"

    #: A pharmacy or prescriber checked live against the platform (its health badge).
    CHECKED = "checked"
    #: A withheld pharmacy (its contact rejected by the platform) put back in the search.
    CLEARED = "cleared"


class AdminAuditEvent(IdMixin, Base):
    """One admin change to a pharmacy, prescriber, user account, formulary line or API
    client: who, what, before and after.

    Written in the same transaction as the change, so a change without its event (or the
    reverse) cannot be committed. Append-only: a database trigger (migration 0006) refuses
    UPDATE and DELETE.

    ``changes`` maps each changed field to ``{"before": ..., "after": ...}``; a secret
    (a prescriber's platform login, password or signing PIN) is recorded only as
    ``{"secret": "changed"}`` or ``{"secret": "removed"}``, never with a value, not even
    encrypted.
    """

    __tablename__ = "admin_audit_events"
    __table_args__ = (Index("ix_admin_audit_events_entity", "entity_type", "entity_id", "seq"),)

    #: The order events were recorded in (ids are random).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    actor_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    entity_type: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[uuid.UUID]
    action: Mapped[str] = mapped_column(String(20))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
