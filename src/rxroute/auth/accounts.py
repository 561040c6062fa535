"""Changes to an account that must end its sessions: new password, deactivation, and an
admin's "sign out everywhere". Services: they never commit (the request owns that)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth import passwords
from rxroute.auth.invitations import revoke_links
from rxroute.auth.sessions import open_session, revoke_user_sessions
from rxroute.auth.signin import SignInRefused, reauthenticate
from rxroute.config import Settings
from rxroute.models import RevokeReason, SessionKind, User


class PasswordChangeRefused(ValueError):
    """The message names the field and what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


async def change_password(
    db: AsyncSession,
    settings: Settings,
    user: User,
    *,
    current: str,
    new: str,
    client: str,
    kind: SessionKind,
) -> str:
    """Set a new password after checking the current one; every existing session of the
    user ends (whoever may have learnt the old password is signed out too) and a fresh one
    is opened for the caller: returns its token. Raises :class:`PasswordChangeRefused`, or
    :class:`rxroute.auth.signin.SignInThrottled` after too many wrong current passwords."""
    try:
        await reauthenticate(user, current, client)
    except SignInRefused:
        raise PasswordChangeRefused("current_password", "the current password is wrong") from None
    problem = passwords.password_problem(new)
    if problem:
        raise PasswordChangeRefused("new_password", f"the new password is not accepted: {problem}")
    if new == current:
        raise PasswordChangeRefused("new_password", "the new password is the same as the old")
    user.password_hash = await asyncio.to_thread(passwords.hash_password, new)
    await revoke_user_sessions(db, user.id, RevokeReason.PASSWORD_CHANGED)
    return await open_session(db, settings, user.id, kind)


async def set_user_active(db: AsyncSession, user: User, active: bool) -> int:
    """(De)activate an account; deactivating ends its sessions and cancels its emailed
    set-password links (a link must not reactivate it). Returns how many sessions ended."""
    user.active = active
    if active:
        return 0
    await db.flush()  # the user's row is locked before its links, as everywhere
    await revoke_links(db, user.id)
    return await revoke_user_sessions(db, user.id, RevokeReason.DEACTIVATED)


async def sign_out_everywhere(db: AsyncSession, user: User) -> int:
    """An admin ends every session of the user (browsers and API clients)."""
    return await revoke_user_sessions(db, user.id, RevokeReason.SIGNED_OUT_EVERYWHERE)
