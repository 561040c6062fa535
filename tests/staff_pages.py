"""Helpers for the server-rendered staff pages: sign in through the form, read CSRF tokens."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.auth.helpers import post_login
from tests.factories import PASSWORD

_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


async def sign_in(client: httpx.AsyncClient, user: User, password: str = PASSWORD) -> None:
    response = await post_login(client, user.email, password)
    assert response.status_code == 303, response.text
    assert client.cookies.get("rxroute_session")


def csrf_from(html: str) -> str:
    match = _META.search(html)
    assert match and match.group(1), "no CSRF token on the page"
    return match.group(1)


async def csrf_for(client: httpx.AsyncClient, path: str) -> str:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return csrf_from(response.text)


@pytest.fixture
async def admin(session: AsyncSession, db: Runtime) -> User:
    """An admin account (imported as a fixture by the staff packages' conftest files)."""
    user = await factories.make_user(session, Role.ADMIN)
    await session.commit()
    return user


@pytest.fixture
async def as_admin(client: httpx.AsyncClient, admin: User) -> httpx.AsyncClient:
    """The test client, signed in as :func:`admin` through the sign-in form."""
    await sign_in(client, admin)
    return client
