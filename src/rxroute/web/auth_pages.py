"""Sign-in, sign-out and password change pages.

Sign-in goes through the same service as the API (:mod:`rxroute.auth.signin`): the same
throttling, the same answer and cost for unknown and known accounts. The form carries a
pre-session CSRF token (a signed double-submit cookie, see :mod:`rxroute.auth.csrf`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.auth.accounts import PasswordChangeRefused, change_password
from rxroute.auth.dependencies import SESSION_COOKIE, RuntimeDep, SessionDep, authenticate_request
from rxroute.auth.endpoints import client_address
from rxroute.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from rxroute.auth.sessions import revoke_session, session_id_of
from rxroute.auth.signin import SignInRefused, SignInThrottled, sign_in
from rxroute.auth.tokens import InvalidToken
from rxroute.config import Settings
from rxroute.models import RevokeReason, SessionKind
from rxroute.web.deps import LoginNotice, PageUser, home_for, home_for_role, page_user
from rxroute.web.security import (
    SIGN_IN_COOKIE,
    clear_session_cookie,
    clear_sign_in_cookie,
    csrf_guard,
    csrf_token,
    set_session_cookie,
    set_sign_in_cookie,
    sign_in_csrf_ok,
    sign_in_csrf_token,
    sign_in_nonce,
)
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

WRONG_CREDENTIALS = "Email or password is wrong."
FORM_EXPIRED = (
    "This sign-in form had expired or did not come from rxroute, so nothing was checked. "
    "Please sign in again."
)
NOTICES = {
    LoginNotice.ENDED: "You were signed out. Sign in again to carry on.",
    LoginNotice.UNSAVED: (
        "You were signed out, so what you just submitted was not saved. "
        "Sign in, then submit it again."
    ),
}


def _safe_next(next_url: str | None) -> str | None:
    """Only same-site paths: an open redirect would make our sign-in page a phishing aid."""
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return None


def _login_page(
    request: Request, settings: Settings, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """The sign-in form with its CSRF token (setting the nonce cookie when new)."""
    nonce, fresh = sign_in_nonce(request)
    full = {"email": "", "next": "", **context, "signin_csrf": sign_in_csrf_token(settings, nonce)}
    page = render(request, "login.html", full, status_code=status_code)
    if fresh:
        set_sign_in_cookie(page, settings, nonce)
    return page


@router.get("/", response_model=None)
async def root(request: Request, session: SessionDep, runtime: RuntimeDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            found = await authenticate_request(request, session, runtime.settings, token)
        except InvalidToken:
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse(home_for(found.user), status_code=303)
    return RedirectResponse("/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, runtime: RuntimeDep, next: str | None = None, notice: str | None = None
) -> HTMLResponse:
    known = notice in {item.value for item in LoginNotice}
    message = NOTICES[LoginNotice(notice)] if known and notice else None
    return _login_page(
        request, runtime.settings, {"next": _safe_next(next) or "", "notice": message}
    )


async def end_cookie_session(request: Request, session: SessionDep, settings: Settings) -> None:
    """Revoke the session the browser's cookie names, if it is a genuine one."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return
    try:
        session_id = session_id_of(settings, token)
    except InvalidToken:
        return
    await revoke_session(session, session_id, RevokeReason.SIGNED_OUT)


@router.post("/login", response_model=None)
async def login(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    settings = runtime.settings
    back = {"email": email, "next": _safe_next(next) or ""}
    if not sign_in_csrf_ok(settings, request.cookies.get(SIGN_IN_COOKIE), csrf_token):
        return _login_page(request, settings, {**back, "error": FORM_EXPIRED}, status_code=403)
    errors: dict[str, str] = {}
    if not email.strip():
        errors["email"] = "Enter your email address."
    if not password:
        errors["password"] = "Enter your password."  # noqa: S105 - a form message
    if errors:
        return _login_page(request, settings, {**back, "errors": errors}, status_code=422)
    try:
        signed_in = await sign_in(
            session,
            settings,
            email=email,
            password=password,
            client=client_address(request),
            kind=SessionKind.PAGE,
        )
    except SignInThrottled as exc:
        error = f"Too many attempts. Try again in {exc.retry_after} seconds."
        page = _login_page(request, settings, {**back, "error": error}, status_code=429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except SignInRefused:
        return _login_page(request, settings, {**back, "error": WRONG_CREDENTIALS}, 401)
    # The browser's previous session (if any) ends: one cookie, one live session.
    await end_cookie_session(request, session, settings)
    target = _safe_next(next) or home_for_role(signed_in.role)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, settings, signed_in.token)
    clear_sign_in_cookie(response)
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, runtime: RuntimeDep) -> RedirectResponse:
    """Ends the session server-side: the cookie stops working even if a copy was kept."""
    # No CSRF check needed: signing someone out is harmless and the cookie is SameSite.
    await end_cookie_session(request, session, runtime.settings)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response)
    return response


def _password_page(
    request: Request, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    full = {"min_length": MIN_PASSWORD_LENGTH, "errors": {}, **context}
    return render(request, "account/password.html", full, status_code=status_code)


#: The signed-in user's own account pages: CSRF-guarded on the router, like every page router.
account_router = APIRouter(
    include_in_schema=False, dependencies=[Depends(page_user), Depends(csrf_guard)]
)


@account_router.get("/account/password", response_class=HTMLResponse)
async def password_form(request: Request, user: PageUser) -> HTMLResponse:
    return _password_page(request, {})


@account_router.post("/account/password", response_model=None)
async def password_change(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    current_password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
    new_password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
    confirm_password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
) -> Response:
    settings = runtime.settings
    if new_password != confirm_password:
        errors = {"confirm_password": "The two new passwords are not the same."}
        return _password_page(request, {"errors": errors}, status_code=422)
    try:
        token = await change_password(
            session,
            settings,
            user,
            current=current_password,
            new=new_password,
            client=client_address(request),
            kind=SessionKind.PAGE,
        )
    except SignInThrottled as exc:
        errors = {"current_password": f"Too many attempts. Try again in {exc.retry_after} seconds."}
        return _password_page(request, {"errors": errors}, status_code=429)
    except PasswordChangeRefused as exc:
        message = exc.message[0].upper() + exc.message[1:] + "."
        return _password_page(request, {"errors": {exc.field: message}}, status_code=422)
    # Every earlier session ended; this browser continues on a fresh one.
    page = _password_page(request, {"changed": True, "csrf_token": csrf_token(settings, token)})
    set_session_cookie(page, settings, token)
    return page
