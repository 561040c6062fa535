from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from rxroute.api_docs import bearer_auth
from rxroute.api_errors import error_responses
from rxroute.auth.dependencies import CurrentUser, RuntimeDep, SessionDep
from rxroute.auth.passwords import verify_password
from rxroute.auth.tokens import issue_token
from rxroute.models import User

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

#: One message for every wrong pair, so the answer does not reveal which accounts exist.
WRONG_CREDENTIALS = "email or password is wrong"


class TokenRequest(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    role: str


class Me(BaseModel):
    id: str
    email: str
    role: str


@router.post(
    "/token",
    summary="Get an access token",
    response_model=TokenResponse,
    responses=error_responses(401, 422, 503),
)
async def create_token(
    body: TokenRequest, session: SessionDep, runtime: RuntimeDep
) -> TokenResponse:
    user = await session.scalar(select(User).where(func.lower(User.email) == body.email.lower()))
    ok = verify_password(user.password_hash if user else None, body.password)
    if user is None or not ok or not user.active:
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail=WRONG_CREDENTIALS)
    settings = runtime.settings
    return TokenResponse(
        access_token=issue_token(settings.session_secret.get_secret_value(), user.id, user.role),
        expires_in=settings.access_token_ttl_seconds,
        role=user.role,
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
