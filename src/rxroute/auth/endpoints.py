"""The API's sign-in, sign-out and password change. Sign-in goes through the same service
(and the same throttling) as the sign-in page."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from rxroute.api_docs import bearer_auth
from rxroute.api_errors import error_responses
from rxroute.auth.accounts import PasswordChangeRefused, change_password
from rxroute.auth.dependencies import CurrentUser, RuntimeDep, SessionDep
from rxroute.auth.passwords import MAX_PASSWORD_LENGTH
from rxroute.auth.sessions import revoke_session
from rxroute.auth.signin import (
    WRONG_CREDENTIALS,
    SignInRefused,
    SignInThrottled,
    sign_in,
)
from rxroute.models import RevokeReason, SessionKind

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

__all__ = ["WRONG_CREDENTIALS", "client_address", "router"]


class TokenRequest(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    role: str


class Me(BaseModel):
    id: str
    email: str
    role: str


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


def client_address(request: Request) -> str:
    """The address sign-in throttling is keyed by (the proxy's, behind a proxy)."""
    return request.client.host if request.client else "unknown"


def throttled(exc: SignInThrottled) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=str(exc),
        headers={"Retry-After": str(exc.retry_after)},
    )


@router.post(
    "/token",
    summary="Get an access token",
    response_model=TokenResponse,
    responses=error_responses(401, 422, 429, 503),
)
async def create_token(
    body: TokenRequest, request: Request, session: SessionDep, runtime: RuntimeDep
) -> TokenResponse:
    """A bearer token for a new session; revoke it with ``POST /api/v1/auth/logout``."""
    try:
        signed_in = await sign_in(
            session,
            runtime.settings,
            email=body.email,
            password=body.password,
            client=client_address(request),
            kind=SessionKind.API,
        )
    except SignInThrottled as exc:
        raise throttled(exc) from None
    except SignInRefused:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED, detail=WRONG_CREDENTIALS
        ) from None
    return TokenResponse(
        access_token=signed_in.token,
        expires_in=runtime.settings.access_token_ttl_seconds,
        role=signed_in.role,
    )


@router.post(
    "/logout",
    summary="End this session",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(bearer_auth)],
    responses=error_responses(401, 503),
)
async def logout(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    """End the session of the token (or cookie) this request carries, at once."""
    session_id: uuid.UUID = request.state.auth_session_id
    await revoke_session(session, session_id, RevokeReason.SIGNED_OUT)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/password",
    summary="Change the password",
    response_model=TokenResponse,
    dependencies=[Depends(bearer_auth)],
    responses=error_responses(401, 422, 429, 503),
)
async def new_password(
    body: PasswordChange,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> TokenResponse:
    """Change the password: every session of the account ends (this one too) and the
    answer carries a fresh token for the caller."""
    try:
        token = await change_password(
            session,
            runtime.settings,
            user,
            current=body.current_password,
            new=body.new_password,
            client=client_address(request),
            kind=SessionKind.API,
        )
    except SignInThrottled as exc:
        raise throttled(exc) from None
    except PasswordChangeRefused as exc:
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"{exc.field}: {exc.message}",
        ) from None
    return TokenResponse(
        access_token=token, expires_in=runtime.settings.access_token_ttl_seconds, role=user.role
    )


@router.get(
    "/me",
    summary="Who is signed in",
    response_model=Me,
    dependencies=[Depends(bearer_auth)],
    responses=error_responses(401, 503),
)
async def me(user: CurrentUser) -> Me:
    return Me(id=str(user.id), email=user.email, role=user.role)
