"""Server-side sessions: every sign-in is an ``auth_sessions`` row its token names.

Checked on every request with one primary-key read (joined to the user), so signing out,
changing the password, deactivating the account or an admin's "sign out everywhere" ends a
session at once instead of when its signed token would expire. Revoked rows are kept a day
so a client still holding the token is told why it was signed out, then removed the next
time that user signs in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.keys import session_keys
from rxroute.auth.tokens import InvalidToken, issue_token, read_token
from rxroute.config import Settings
from rxroute.models import AuthSession, RevokeReason, SessionKind, User

#: How long an ended session's row is kept to explain a 401, before it is cleaned up.
KEEP_ENDED = timedelta(days=1)

_WHY = {
    RevokeReason.SIGNED_OUT.value: "signed out",
    RevokeReason.PASSWORD_CHANGED.value: "the password was changed",
    RevokeReason.DEACTIVATED.value: "the account was deactivated",
    RevokeReason.SIGNED_OUT_EVERYWHERE.value: (
        "an administrator signed this account out everywhere"
    ),
}
SESSION_GONE = "session ended; sign in again"
TOKEN_EXPIRED = "token expired; sign in again"  # noqa: S105 - a message, not a secret
ACCOUNT_INACTIVE = "this account is not active"


class SessionEnded(InvalidToken):
    """The token was genuine but its session has been revoked; the message says why."""


@dataclass(frozen=True)
class Authenticated:
    user: User
    session_id: uuid.UUID


def _now() -> datetime:
    return datetime.now(UTC)


def ended_message(reason: str | None) -> str:
    why = _WHY.get(reason or "")
    return f"session ended: {why}; sign in again" if why else SESSION_GONE


async def open_session(
    db: AsyncSession, settings: Settings, user_id: uuid.UUID, kind: SessionKind
) -> str:
    """A new session for the user; returns the token (cookie value or bearer token)."""
    now = _now()
    row = AuthSession(
        id=uuid.uuid4(),
        user_id=user_id,
        kind=kind.value,
        expires_at=now + timedelta(seconds=settings.access_token_ttl_seconds),
    )
    # Housekeeping bounded by one user's rows (indexed): ended sessions are kept a day.
    await db.execute(
        delete(AuthSession).where(
            AuthSession.user_id == user_id,
            or_(
                AuthSession.expires_at < now - KEEP_ENDED,
                AuthSession.revoked_at < now - KEEP_ENDED,
            ),
        )
    )
    db.add(row)
    await db.flush()
    return issue_token(session_keys(settings), row.id)


def session_id_of(settings: Settings, token: str) -> uuid.UUID:
    """The session a token names (signature and age checked; the row is not read)."""
    return read_token(session_keys(settings), token, settings.access_token_ttl_seconds)


async def authenticate(db: AsyncSession, settings: Settings, token: str) -> Authenticated:
    """The live session and active user a token names; raises :class:`InvalidToken` (or
    :class:`SessionEnded`) with a message fit to show the caller."""
    session_id = session_id_of(settings, token)
    found = (
        await db.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.id == session_id)
        )
    ).one_or_none()
    if found is None:
        raise SessionEnded(SESSION_GONE)
    auth_session, user = found
    if auth_session.revoked_at is not None:
        raise SessionEnded(ended_message(auth_session.revoked_reason))
    if auth_session.expires_at <= _now():
        raise InvalidToken(TOKEN_EXPIRED)
    if not user.active:
        raise InvalidToken(ACCOUNT_INACTIVE)
    return Authenticated(user=user, session_id=auth_session.id)


async def revoke_session(db: AsyncSession, session_id: uuid.UUID, reason: RevokeReason) -> bool:
    """End one session; False if it had already ended."""
    ended = await db.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=_now(), revoked_reason=reason.value)
        .returning(AuthSession.id)
    )
    return ended.first() is not None


async def revoke_user_sessions(db: AsyncSession, user_id: uuid.UUID, reason: RevokeReason) -> int:
    """End every live session of the user (cookies and API tokens); returns how many."""
    now = _now()
    ended = await db.execute(
        update(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
        .values(revoked_at=now, revoked_reason=reason.value)
        .returning(AuthSession.id)
    )
    return len(ended.all())


async def live_session_counts(db: AsyncSession, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many live sessions each of these users has (for the admin's user list)."""
    if not user_ids:
        return {}
    rows = await db.execute(
        select(AuthSession.user_id, func.count())
        .where(
            AuthSession.user_id.in_(user_ids),
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > _now(),
        )
        .group_by(AuthSession.user_id)
    )
    return {user_id: count for user_id, count in rows}
