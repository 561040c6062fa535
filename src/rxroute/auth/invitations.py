"""One-time, expiring set-password links: a new account's invitation, or an admin's reset.

The link carries a random token (``secrets.token_urlsafe(32)``, 256 bits); only its SHA-256
is stored, so the table (or a backup of it) holds no usable link. A link is *live* while it
is unused, not revoked and not expired. Issuing a new link for a user revokes their earlier
live ones (the user's row is locked first, so two admins clicking at once leave one live
link; a partial unique index is the backstop), and deactivating the account revokes them.

The email is a job deferred in the same transaction as the link (:mod:`rxroute.auth.tasks`):
no link without its email, and no email for a link that was rolled back. The job's
arguments carry the token sealed with the encryption key, never in clear.

Using a link claims it with one conditional UPDATE, so two submissions of the same form set
the password once. Locks are taken user row first, then links, everywhere (issue, use,
deactivate), so these never deadlock against each other. Services: they never commit.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth import passwords
from rxroute.auth.sessions import open_session, revoke_user_sessions
from rxroute.auth.signin import SignedIn
from rxroute.models import (
    Invitation,
    InvitationPurpose,
    RevokeReason,
    Role,
    SessionKind,
    User,
)
from rxroute.runtime import Runtime

#: Longer submitted tokens are not even hashed: ours are 43 characters.
MAX_TOKEN_LENGTH = 100


class LinkState(enum.StrEnum):
    LIVE = "live"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class LinkUnusable(Exception):
    """The link cannot set a password (used, expired, replaced, or not ours)."""

    def __init__(self, state: LinkState) -> None:
        super().__init__(f"this link is {state.value}")
        self.state = state


class PasswordRefused(ValueError):
    """The new password breaks the password rule; the message says which."""


@dataclass(frozen=True)
class IssuedLink:
    invitation_id: uuid.UUID
    expires_at: datetime
    #: The token in clear: only for the email (and tests); never stored or logged.
    token: str


def _now() -> datetime:
    return datetime.now(UTC)


def hash_token(token: str) -> str:
    """SHA-256, hex: the token is random, so a fast hash is enough (no dictionary to try)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def welcome_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/welcome/{token}"


def state_of(invitation: Invitation | None, now: datetime | None = None) -> LinkState:
    if invitation is None:
        return LinkState.UNKNOWN
    if invitation.used_at is not None:
        return LinkState.USED
    if invitation.revoked_at is not None:
        return LinkState.REVOKED
    if invitation.expires_at <= (now or _now()):
        return LinkState.EXPIRED
    return LinkState.LIVE


async def _lock_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user's row, locked for this transaction (pending changes are flushed first, by
    autoflush, so refreshing the loaded object loses nothing)."""
    user = await session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise LookupError("no such user")
    return user


async def revoke_links(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Revoke the user's live links (the caller holds the user's row); returns how many."""
    revoked = await session.execute(
        update(Invitation)
        .where(
            Invitation.user_id == user_id,
            Invitation.used_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=_now())
        .returning(Invitation.id)
    )
    return len(revoked.all())


async def issue_link(
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    purpose: InvitationPurpose,
    *,
    created_by: uuid.UUID | None,
) -> IssuedLink:
    """A new live link for ``user`` (earlier ones revoked) and its email, deferred in this
    transaction."""
    from rxroute.auth.tasks import defer_invitation_email  # that module imports this one

    await _lock_user(session, user.id)
    await revoke_links(session, user.id)
    token = new_token()
    expires_at = _now() + timedelta(hours=runtime.settings.invitation_hours)
    invitation = Invitation(
        id=uuid.uuid4(),
        token_hash=hash_token(token),
        user_id=user.id,
        purpose=purpose.value,
        expires_at=expires_at,
        created_by=created_by,
    )
    session.add(invitation)
    await session.flush()
    await defer_invitation_email(session, invitation.id, runtime.secret_box.encrypt(token))
    return IssuedLink(invitation_id=invitation.id, expires_at=expires_at, token=token)


async def find_link(session: AsyncSession, token: str) -> Invitation | None:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return await session.scalar(
        select(Invitation).where(Invitation.token_hash == hash_token(token))
    )


@dataclass(frozen=True)
class LinkView:
    """What the welcome page shows about a link: its state, and whose (no other details)."""

    state: LinkState
    purpose: str | None = None
    email: str | None = None


async def view_link(session: AsyncSession, token: str) -> LinkView:
    invitation = await find_link(session, token)
    state = state_of(invitation)
    if invitation is None or state is not LinkState.LIVE:
        return LinkView(state)
    user = await session.get(User, invitation.user_id)
    return LinkView(state, invitation.purpose, user.email if user else None)


async def set_password_with_link(
    session: AsyncSession,
    runtime: Runtime,
    token: str,
    password: str,
    *,
    kind: SessionKind = SessionKind.PAGE,
) -> SignedIn:
    """Use the link: the password is set (argon2), the account activated, every other
    session of it ended, the link spent, and a new session opened for the caller.

    Raises :class:`PasswordRefused` (the link is left unused, so the form can be fixed) or
    :class:`LinkUnusable`.
    """
    found = await find_link(session, token)
    state = state_of(found)
    if found is None or state is not LinkState.LIVE:
        raise LinkUnusable(state)
    problem = passwords.password_problem(password)
    if problem:
        raise PasswordRefused(f"the password is not accepted: {problem}")
    user = await _lock_user(session, found.user_id)
    claimed = await session.scalar(
        update(Invitation)
        .where(
            Invitation.id == found.id,
            Invitation.used_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > _now(),
        )
        .values(used_at=_now())
        .returning(Invitation.purpose)
    )
    if claimed is None:
        await session.refresh(found)
        raise LinkUnusable(state_of(found))
    user.password_hash = await asyncio.to_thread(passwords.hash_password, password)
    user.active = True
    await revoke_user_sessions(session, user.id, RevokeReason.PASSWORD_CHANGED)
    token_out = await open_session(session, runtime.settings, user.id, kind)
    return SignedIn(user_id=user.id, role=user.role, token=token_out)


async def pending_invitations(session: AsyncSession, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these accounts were invited and have never used a link."""
    if not user_ids:
        return set()
    rows = await session.scalars(
        select(Invitation.user_id)
        .where(Invitation.user_id.in_(user_ids))
        .group_by(Invitation.user_id)
        .having(
            and_(
                func.bool_or(Invitation.purpose == InvitationPurpose.INVITE.value),
                func.bool_and(Invitation.used_at.is_(None)),
            )
        )
    )
    return set(rows)


def email_role_label(role: str) -> str:
    """How the email names the account (no other detail about the person)."""
    return {
        Role.PATIENT.value: "patient",
        Role.SUPPORT.value: "support",
        Role.ADMIN.value: "administrator",
        Role.PRESCRIBER.value: "prescriber",
    }.get(role, role)
