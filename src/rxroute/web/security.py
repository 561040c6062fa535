"""Session cookies, CSRF tokens and the sign-in form's double-submit cookie for the pages.

The session cookie holds the same signed token the API issues: it names a server-side
session (see :mod:`rxroute.auth.sessions`), so signing out ends it at once. CSRF tokens are
HMACs under their own key (see :mod:`rxroute.auth.csrf`).
"""

from __future__ import annotations

from fastapi import HTTPException, Request, Response

from rxroute.auth.csrf import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    SIGN_IN_COOKIE,
    csrf_ok,
    csrf_token,
    new_sign_in_nonce,
    sign_in_csrf_ok,
    sign_in_csrf_token,
)
from rxroute.auth.dependencies import SESSION_COOKIE
from rxroute.auth.ratelimit import SignInLimiter, sign_in_limiter
from rxroute.config import Settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SIGN_IN_COOKIE",
    "SignInLimiter",
    "clear_session_cookie",
    "csrf_ok",
    "csrf_token",
    "require_csrf",
    "set_session_cookie",
    "sign_in_csrf_ok",
    "sign_in_csrf_token",
    "sign_in_limiter",
]

#: How long a sign-in form stays usable once shown.
SIGN_IN_FORM_SECONDS = 3600


def require_csrf(settings: Settings, request: Request, submitted: str | None) -> None:
    if not csrf_ok(settings, request.cookies.get(SESSION_COOKIE), submitted):
        raise HTTPException(
            status_code=403,
            detail=(
                "this form has expired or did not come from rxroute; reload the page and try again"
            ),
        )


def _secure(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.access_token_ttl_seconds,
        httponly=True,
        secure=_secure(settings),
        samesite="lax",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def sign_in_nonce(request: Request) -> tuple[str, bool]:
    """The sign-in form's nonce from its cookie, or a new one: (nonce, is it new). An
    existing nonce is kept, so two open sign-in tabs both work."""
    nonce = request.cookies.get(SIGN_IN_COOKIE) or ""
    if 16 <= len(nonce) <= 64:
        return nonce, False
    return new_sign_in_nonce(), True


def set_sign_in_cookie(response: Response, settings: Settings, nonce: str) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        max_age=SIGN_IN_FORM_SECONDS,
        httponly=True,
        secure=_secure(settings),
        samesite="lax",
        path="/login",
    )


def clear_sign_in_cookie(response: Response) -> None:
    response.delete_cookie(SIGN_IN_COOKIE, path="/login")
