"""FastAPI dependencies: the database session of a request, and who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.csrf import CSRF_HEADER, SAFE_METHODS, csrf_ok
from rxroute.auth.sessions import Authenticated, authenticate
from rxroute.auth.tokens import InvalidToken
from rxroute.config import Settings
from rxroute.models import Role, User
from rxroute.runtime import Runtime, get_runtime


async def runtime_dependency() -> Runtime:
    """``async`` though it awaits nothing: FastAPI runs a plain ``def`` dependency in its
    thread pool, a thread hand-off on every request for a lookup of a global."""
    return get_runtime()


RuntimeDep = Annotated[Runtime, Depends(runtime_dependency)]


async def session_dependency(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    async with runtime.sessionmaker() as session, session.begin():
        yield session


#: scope="function": the commit happens before the response is sent, so a client is never
#: told "accepted" for a transaction that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]

SESSION_COOKIE = "rxroute_session"


def _unauthenticated(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def authenticate_request(
    request: Request, session: AsyncSession, settings: Settings, token: str
) -> Authenticated:
    """The live session a token names (see :func:`rxroute.auth.sessions.authenticate`),
    remembered on the request so sign-out can end exactly this session."""
    found = await authenticate(session, settings, token)
    request.state.auth_session_id = found.session_id
    return found


async def current_user(request: Request, session: SessionDep, runtime: RuntimeDep) -> User:
    header = request.headers.get("authorization", "")
    token: str | None = None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthenticated("Authorization header must be 'Bearer <token>'")
        token = value.strip()
    else:
        token = request.cookies.get(SESSION_COOKIE)
        # A browser sends the cookie on any site's request: unsafe calls need the CSRF token.
        if (
            token
            and request.method not in SAFE_METHODS
            and not csrf_ok(runtime.settings, token, request.headers.get(CSRF_HEADER))
        ):
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"missing or wrong {CSRF_HEADER} header; reload the page and try again",
            )
    if not token:
        raise _unauthenticated("sign in first: POST /api/v1/auth/token")
    try:
        found = await authenticate_request(request, session, runtime.settings, token)
    except InvalidToken as exc:
        raise _unauthenticated(str(exc)) from exc
    return found.user


CurrentUser = Annotated[User, Depends(current_user)]


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, User]]:
    allowed = {role.value for role in roles}

    async def checker(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"this needs the {' or '.join(sorted(allowed))} role",
            )
        return user

    return checker


StaffUser = Annotated[User, Depends(require_roles(Role.SUPPORT, Role.ADMIN))]
AdminUser = Annotated[User, Depends(require_roles(Role.ADMIN))]
