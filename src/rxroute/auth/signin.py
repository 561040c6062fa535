"""The one sign-in service behind both doors: ``POST /api/v1/auth/token`` and the page form.

Both get the same throttling (:mod:`rxroute.auth.ratelimit`), the same answer for a wrong
email and a wrong password, the same cost for both (argon2 always runs, against a dummy hash
for an unknown email), a rehash when the argon2 parameters have changed, and a revocable
server-side session (:mod:`rxroute.auth.sessions`).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth import passwords
from rxroute.auth.ratelimit import sign_in_limiter
from rxroute.auth.sessions import open_session
from rxroute.config import Settings
from rxroute.models import SessionKind, User
from rxroute.observability.metrics import SIGN_INS

#: One message for every wrong pair, so the answer does not reveal which accounts exist.
WRONG_CREDENTIALS = "email or password is wrong"


class SignInRefused(Exception):
    """Wrong email or password (or an inactive account): one answer for all of them."""


class SignInThrottled(Exception):
    """Too many failures from this client for this account (or from this client at all)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after} seconds")
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    user_id: uuid.UUID
    role: str
    token: str


async def _verify(password_hash: str | None, password: str) -> bool:
    # argon2 takes tens of milliseconds of CPU and releases the GIL: off the event loop.
    return await asyncio.to_thread(passwords.verify_password, password_hash, password)


async def check_password(user: User, password: str) -> bool:
    """The user's password check, for sign-in and re-authentication alike; a right password
    hashed with older argon2 parameters is rehashed with today's."""
    ok = await _verify(user.password_hash, password)
    if ok and passwords.needs_rehash(user.password_hash):
        user.password_hash = await asyncio.to_thread(passwords.hash_password, password)
    return ok


async def _throttled_check(user: User | None, email: str, password: str, client: str) -> User:
    """The password check under the limiter: refused before argon2 runs when this client
    must wait; a failure counts against (account, client), the client and the account."""
    wait = sign_in_limiter.retry_after(email, client)
    if wait:
        SIGN_INS.labels(outcome="throttled").inc()
        raise SignInThrottled(wait)
    attempt = sign_in_limiter.attempt(email, client)
    if user is None:
        await _verify(None, password)  # the same cost as a known account's check
        SIGN_INS.labels(outcome="refused").inc()
        raise SignInRefused(WRONG_CREDENTIALS)
    if not await check_password(user, password) or not user.active:
        SIGN_INS.labels(outcome="refused").inc()
        raise SignInRefused(WRONG_CREDENTIALS)
    sign_in_limiter.succeeded(attempt)
    SIGN_INS.labels(outcome="ok").inc()
    return user


async def sign_in(
    db: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    client: str,
    kind: SessionKind,
) -> SignedIn:
    """Check the pair and open a session; raises :class:`SignInThrottled` before looking at
    the password when this client must wait, and :class:`SignInRefused` when it is wrong."""
    wait = sign_in_limiter.retry_after(email, client)
    if wait:  # refused before any database read
        SIGN_INS.labels(outcome="throttled").inc()
        raise SignInThrottled(wait)
    found = await db.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    user = await _throttled_check(found, email, password, client)
    token = await open_session(db, settings, user.id, kind)
    return SignedIn(user_id=user.id, role=user.role, token=token)


async def reauthenticate(user: User, password: str, client: str) -> None:
    """A signed-in user proves the password again (to change it): throttled like sign-in,
    so a stolen session cannot be used to guess the password."""
    await _throttled_check(user, user.email, password, client)
