"""Helpers for the server-rendered staff pages: sign in through the form, read CSRF tokens."""

from __future__ import annotations

import re

import httpx

from rxroute.models import User
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
