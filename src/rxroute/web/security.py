"""Session cookies, CSRF tokens and the sign-in form's double-submit cookie for the pages.

The session cookie holds the same signed token the API issues: it names a server-side
session (see :mod:`rxroute.auth.sessions`), so signing out ends it at once. CSRF tokens are
HMACs under their own key (see :mod:`rxroute.auth.csrf`). Unsafe API calls authenticated by
the cookie must send it in ``X-CSRF-Token``; forms send it as the ``csrf_token`` field.

Pages check it once, on the router: every page router declares ``csrf_guard`` (or its own
:class:`CsrfGuard`) in ``APIRouter(dependencies=...)``, so a new POST handler is guarded
without remembering to call anything (a route-table test walks ``app.routes`` to prove it).
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
from rxroute.auth.dependencies import SESSION_COOKIE, RuntimeDep
from rxroute.auth.ratelimit import SignInLimiter, sign_in_limiter
from rxroute.config import Settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SIGN_IN_COOKIE",
    "CsrfGuard",
    "PreSessionCsrfGuard",
    "SignInLimiter",
    "clear_session_cookie",
    "csrf_guard",
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


FORM_NOT_OURS = "this form has expired or did not come from rxroute; reload the page and try again"


def require_csrf(settings: Settings, request: Request, submitted: str | None) -> None:
    if not csrf_ok(settings, request.cookies.get(SESSION_COOKIE), submitted):
        raise HTTPException(
            status_code=403,
            detail=FORM_NOT_OURS,
        )


def _secure(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


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


class PreSessionCsrfGuard:
    """Router dependency for a form shown before there is a session (the welcome page).

    A signed double-submit cookie, as on the sign-in form (:mod:`rxroute.auth.csrf`): the
    page sets a random nonce in ``cookie`` (scoped to ``path``) and puts its HMAC in the
    form; an unsafe request needs both to match. Another site can neither read the cookie
    nor compute the HMAC, so it cannot make a browser submit the form (and be signed in to
    an account of the other site's choosing).
    """

    def __init__(self, cookie: str, path: str) -> None:
        self.cookie = cookie
        self.path = path

    def nonce(self, request: Request) -> tuple[str, bool]:
        """The nonce from the cookie, or a new one: (nonce, is it new)."""
        nonce = request.cookies.get(self.cookie) or ""
        if 16 <= len(nonce) <= 64:
            return nonce, False
        return new_sign_in_nonce(), True

    def set_cookie(self, response: Response, settings: Settings, nonce: str) -> None:
        response.set_cookie(
            self.cookie,
            nonce,
            max_age=SIGN_IN_FORM_SECONDS,
            httponly=True,
            secure=_secure(settings),
            samesite="lax",
            path=self.path,
        )

    async def __call__(self, request: Request, runtime: RuntimeDep) -> None:
        if request.method in SAFE_METHODS:
            return
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise HTTPException(status_code=413, detail="The form is too large.")
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        field = form.get(CSRF_FIELD)
        submitted = field if isinstance(field, str) else None
        if not sign_in_csrf_ok(runtime.settings, request.cookies.get(self.cookie), submitted):
            raise HTTPException(status_code=403, detail=FORM_NOT_OURS)


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
