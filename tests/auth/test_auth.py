"""Sign-in over the API: bearer tokens, one message for wrong credentials, expiry."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.keys import KeyRing
from rxroute.auth.passwords import verify_password
from rxroute.auth.tokens import issue_token
from rxroute.config import Settings
from rxroute.models import Role, User
from rxroute.runtime import Runtime
from tests.auth.helpers import session_token
from tests.factories import PASSWORD, make_user

EMAIL = "someone@example.com"


async def _user(session: AsyncSession, role: Role = Role.SUPPORT) -> User:
    user = await make_user(session, role, email=EMAIL)
    await session.commit()
    return user


async def _token(client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD) -> str:
    response = await client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    token: str = body["access_token"]
    return token


async def test_token_then_me(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await _user(session)
    response = await client.post("/api/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["role"] == "support"
    assert body["expires_in"] == settings.access_token_ttl_seconds
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json() == {"id": str(user.id), "email": EMAIL, "role": "support"}


async def test_email_is_case_insensitive(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await _user(session)
    assert await _token(client, email=EMAIL.upper())


async def test_wrong_password_and_unknown_email_get_the_same_answer(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await _user(session)
    wrong_password = await client.post(
        "/api/v1/auth/token", json={"email": EMAIL, "password": "not it"}
    )
    unknown_email = await client.post(
        "/api/v1/auth/token", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["detail"] == "email or password is wrong"


async def test_deactivated_user_cannot_sign_in(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await _user(session)
    await session.execute(update(User).where(User.id == user.id).values(active=False))
    await session.commit()
    response = await client.post("/api/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 401
    assert response.json()["detail"] == "email or password is wrong"


async def test_deactivated_users_token_stops_working(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await _user(session)
    token = await _token(client)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    await session.execute(update(User).where(User.id == user.id).values(active=False))
    await session.commit()
    response = await client.get("/api/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "this account is not active"}


@pytest.mark.parametrize(
    "header",
    ["Token abc", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "abc"],
)
async def test_malformed_authorization_header_is_401_json(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.get("/api/v1/auth/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Authorization header must be 'Bearer <token>'"}


async def test_no_credentials_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert "sign in" in response.json()["detail"]


async def test_forged_token_is_401(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    await _user(session, Role.PATIENT)
    forged = issue_token(KeyRing("some-other-secret"), uuid.uuid4())
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json() == {"detail": "token is not valid"}
    tampered = (await _token(client))[:-2] + "xx"
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tampered}"})
    assert response.status_code == 401


async def test_expired_token_is_401(
    client: httpx.AsyncClient,
    db: Runtime,
    session: AsyncSession,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await _user(session)
    issued_at = int(time.time()) - settings.access_token_ttl_seconds - 60
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: issued_at)
        old = await session_token(db, user.id)
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 401
    assert response.json() == {"detail": "token expired; sign in again"}


async def test_shorter_ttl_expires_an_older_token(
    client: httpx.AsyncClient,
    db: Runtime,
    session: AsyncSession,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await _user(session)
    issued_at = int(time.time()) - 120
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: issued_at)
        token = await session_token(db, user.id)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    monkeypatch.setattr(settings, "access_token_ttl_seconds", 60)
    response = await client.get("/api/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_password_stored_as_argon2_hash(session: AsyncSession) -> None:
    user = await _user(session)
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert verify_password(user.password_hash, PASSWORD)
    assert not verify_password(user.password_hash, PASSWORD + "x")
    assert not verify_password(None, PASSWORD)
