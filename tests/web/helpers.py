"""Signing in through the real sign-in page and reading the CSRF token the pages carry."""

from __future__ import annotations

import re

import httpx

from tests.auth.helpers import post_login
from tests.factories import PASSWORD

HTML = {"Accept": "text/html"}
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> None:
    response = await post_login(client, email, password)
    assert response.status_code == 303, response.text
    assert client.cookies.get("rxroute_session")


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found and found.group(1), "the page carries no CSRF token"
    return found.group(1)
