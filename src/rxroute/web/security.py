"""Session cookies, CSRF tokens and sign-in rate limiting for the pages.

The session cookie holds the same signed token the API issues (see
:mod:`rxroute.auth.tokens`). The CSRF token is an HMAC of that session token: it needs no
server-side storage, changes with every sign-in, and cannot be computed by another site.
Unsafe API calls authenticated by the cookie must send it in ``X-CSRF-Token``; forms send
it as the ``csrf_token`` field.
"""

from __future__ import annotations

from fastapi import HTTPException, Request, Response

from rxroute.auth.csrf import CSRF_FIELD, CSRF_HEADER, SAFE_METHODS, csrf_ok, csrf_token
from rxroute.auth.dependencies import SESSION_COOKIE
from rxroute.auth.ratelimit import SignInLimiter, limiter_keys, sign_in_limiter
from rxroute.config import Settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SignInLimiter",
    "clear_session_cookie",
    "csrf_ok",
    "csrf_token",
    "limiter_keys",
    "require_csrf",
    "set_session_cookie",
    "sign_in_limiter",
]


def require_csrf(settings: Settings, request: Request, submitted: str | None) -> None:
    if not csrf_ok(settings, request.cookies.get(SESSION_COOKIE), submitted):
        raise HTTPException(
            status_code=403,
            detail=(
                "this form has expired or did not come from rxroute; reload the page and try again"
            ),
        )


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.access_token_ttl_seconds,
        httponly=True,
        secure=settings.public_url.startswith("https://"),
        samesite="lax",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
