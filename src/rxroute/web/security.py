"""Session cookies, CSRF tokens and sign-in rate limiting for the pages.

The session cookie holds the same signed token the API issues (see
:mod:`rxroute.auth.tokens`). The CSRF token is an HMAC of that session token: it needs no
server-side storage, changes with every sign-in, and cannot be computed by another site.
Unsafe API calls authenticated by the cookie must send it in ``X-CSRF-Token``; forms send
it as the ``csrf_token`` field.

Pages check it once, on the router: every page router declares ``csrf_guard`` (or its own
:class:`CsrfGuard`) in ``APIRouter(dependencies=...)``, so a new POST handler is guarded
without remembering to call anything (a route-table test walks ``app.routes`` to prove it).
"""

from __future__ import annotations

from fastapi import HTTPException, Request, Response

from rxroute.auth.csrf import CSRF_FIELD, CSRF_HEADER, SAFE_METHODS, csrf_ok, csrf_token
from rxroute.auth.dependencies import SESSION_COOKIE, RuntimeDep
from rxroute.auth.ratelimit import SignInLimiter, limiter_keys, sign_in_limiter
from rxroute.config import Settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "CsrfGuard",
    "SignInLimiter",
    "clear_session_cookie",
    "csrf_guard",
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


#: The largest page form read to find its token; the CSV import declares its own limit.
MAX_FORM_BYTES = 256 * 1024
#: Fields and files read from a form at most (the largest page form has about 15).
MAX_FORM_FIELDS = 100


class CsrfGuard:
    """Router dependency: an unsafe request to a page carries the session's CSRF token.

    The token comes from the ``X-CSRF-Token`` header or the form's ``csrf_token`` field.
    The form is read here, within ``max_body_bytes`` (a larger declared body is refused
    with 413 before it is read); Starlette caches it, so the handler's own form
    parameters or ``request.form()`` get the same parsed form.
    """

    def __init__(self, max_body_bytes: int = MAX_FORM_BYTES, too_large: str | None = None):
        self.max_body_bytes = max_body_bytes
        self.too_large = too_large or (
            f"The form is larger than {max_body_bytes // 1024} KB; nothing was saved."
        )

    async def __call__(self, request: Request, runtime: RuntimeDep) -> None:
        if request.method in SAFE_METHODS:
            return
        submitted = request.headers.get(CSRF_HEADER)
        if submitted is None:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise HTTPException(status_code=413, detail=self.too_large)
            form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
            field = form.get(CSRF_FIELD)
            submitted = field if isinstance(field, str) else None
        require_csrf(runtime.settings, request, submitted)


#: The guard of every page router with ordinary forms.
csrf_guard = CsrfGuard()


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
