"""Authenticating API keys, and the scope checks operations declare.

Two kinds of operation use these:

- integration-only ones (upsert a patient, create a prescription) declare
  ``Depends(require_scope(Scope.X))`` and get the :class:`ApiClient`;
- operations people also use (read, send) declare ``Depends(user_or_key(Scope.X))`` and get a
  :class:`Caller`: a bearer token starting with ``rxr_`` is an API key and needs the scope,
  anything else goes through the usual sign-in (:func:`rxroute.auth.dependencies.current_user`)
  and that user's role rules.

An unknown or revoked key is 401; a key without the scope is 403 naming the scope.

Both declare ``Security(api_key_auth, scopes=[scope])``: that parameter only documents the
key and its scope in the OpenAPI document (``security: [{"apiKey": [scope]}]``), derived from
the same ``scope`` the check enforces.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.api_docs import api_key_auth
from rxroute.apiclients.keys import key_digest, looks_like_key
from rxroute.apiclients.scopes import Scope
from rxroute.auth.dependencies import RuntimeDep, SessionDep, current_user
from rxroute.models import ApiClient, User

#: ``last_used_at`` is refreshed at most this often, so a busy client does not turn every
#: read into a write of the same row.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _unauthenticated(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


def bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate_key(session: AsyncSession, plain: str) -> ApiClient:
    client = await session.scalar(select(ApiClient).where(ApiClient.key_hash == key_digest(plain)))
    if client is None:
        raise _unauthenticated("unknown API key")
    if client.revoked_at is not None:
        raise _unauthenticated("this API key was revoked; ask an admin for a new one")
    now = datetime.now(UTC)
    if client.last_used_at is None or now - client.last_used_at >= LAST_USED_RESOLUTION:
        # The row stays locked until this request commits, which for a cancel includes the
        # platform call; a request that finds it locked leaves the time to the one that
        # holds it rather than queueing behind it (SKIP LOCKED).
        mine = await session.scalar(
            select(ApiClient.id).where(ApiClient.id == client.id).with_for_update(skip_locked=True)
        )
        if mine is not None:
            client.last_used_at = now
    return client


def _check_scope(client: ApiClient, scope: Scope) -> ApiClient:
    if scope.value not in client.scopes:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this API key lacks the {scope.value} scope",
        )
    return client


def require_scope(scope: Scope) -> Callable[..., Coroutine[Any, Any, ApiClient]]:
    """A dependency: the calling API client, which must hold ``scope``."""

    async def checker(
        request: Request,
        session: SessionDep,
        _documented: HTTPAuthorizationCredentials | None = Security(
            api_key_auth, scopes=[scope.value]
        ),
    ) -> ApiClient:
        token = bearer_token(request)
        if token is None or not looks_like_key(token):
            raise _unauthenticated(
                f"this operation needs an API key with the {scope.value} scope: "
                "'Authorization: Bearer rxr_...'"
            )
        return _check_scope(await authenticate_key(session, token), scope)

    checker.__name__ = f"require_scope_{scope.name.lower()}"
    return checker


@dataclass(frozen=True)
class Caller:
    """Who is calling: a signed-in person, or an integrating platform's API key."""

    user: User | None = None
    client: ApiClient | None = None

    @property
    def who(self) -> User | ApiClient:
        """The one that is set: what who-may-see-what and the history's actor go by."""
        if self.client is not None:
            return self.client
        assert self.user is not None
        return self.user


def user_or_key(scope: Scope) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency: an API key holding ``scope``, or else a signed-in user."""

    async def checker(
        request: Request,
        session: SessionDep,
        runtime: RuntimeDep,
        _documented: HTTPAuthorizationCredentials | None = Security(
            api_key_auth, scopes=[scope.value]
        ),
    ) -> Caller:
        token = bearer_token(request)
        if token is not None and looks_like_key(token):
            return Caller(client=_check_scope(await authenticate_key(session, token), scope))
        return Caller(user=await current_user(request, session, runtime))

    checker.__name__ = f"user_or_key_{scope.name.lower()}"
    return checker
