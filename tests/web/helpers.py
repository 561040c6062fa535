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


_RADIO = re.compile(r'<input type="radio" name="region" value="(\w+)"([^>]*)>')


def region_radios(html: str) -> dict[str, str]:
    """Each region radio's value -> the rest of its tag (attributes), in page order."""
    return {value: rest for value, rest in _RADIO.findall(html)}


def checked_region(html: str) -> str | None:
    """The region radio the page preselects, or None."""
    checked = [value for value, rest in _RADIO.findall(html) if re.search(r"\bchecked\b", rest)]
    assert len(checked) <= 1, f"several regions checked: {checked}"
    return checked[0] if checked else None
