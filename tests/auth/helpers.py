"""Signing in for tests: through the real sign-in form (with its CSRF token), or by opening
a server-side session directly when a test only needs a bearer token or cookie."""

from __future__ import annotations

import re
import uuid

import httpx

from rxroute.auth.sessions import open_session
from rxroute.models import SessionKind
from rxroute.runtime import Runtime

_FORM_TOKEN = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]*)">')


def form_token(html: str) -> str:
    """The first form CSRF token on a page (on the sign-in page: the pre-session one)."""
    found = _FORM_TOKEN.search(html)
    assert found and found.group(1), "the page's form carries no CSRF token"
    return found.group(1)


async def post_login(
    client: httpx.AsyncClient, email: str, password: str, **extra: str
) -> httpx.Response:
    """Open the sign-in page (which sets its CSRF cookie) and submit the form."""
    page = await client.get("/login")
    assert page.status_code == 200, page.text
    data = {"email": email, "password": password, "csrf_token": form_token(page.text), **extra}
    return await client.post("/login", data=data)


async def session_token(
    runtime: Runtime, user_id: uuid.UUID, kind: SessionKind = SessionKind.API
) -> str:
    """A token for a new, committed server-side session of the user."""
    async with runtime.sessionmaker() as db, db.begin():
        return await open_session(db, runtime.settings, user_id, kind)


async def bearer(runtime: Runtime, user_id: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {await session_token(runtime, user_id)}"}
