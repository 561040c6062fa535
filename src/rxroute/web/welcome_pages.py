"""``/welcome/{token}``: set a password with an emailed link (an invitation or a reset).

The link's token is the credential (one-time and expiring, see
:mod:`rxroute.auth.invitations`), so the page needs no session; the form is CSRF-guarded
on the router by a pre-session double-submit cookie, like the sign-in form. The password
rule is the one the password-change page uses (:func:`rxroute.auth.passwords.password_problem`).
Setting it ends every other session of the account and signs this browser in, through the
same session code as the sign-in form, then goes to the account's home page.

A used, expired, replaced or unknown link gets a page saying to ask for a new one (410 for
a link that was genuine, 404 for one that never was), and nothing about the account.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.auth.invitations import (
    LinkState,
    LinkUnusable,
    PasswordRefused,
    set_password_with_link,
    view_link,
)
from rxroute.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from rxroute.config import Settings
from rxroute.web.auth_pages import end_cookie_session
from rxroute.web.deps import home_for_role
from rxroute.web.security import PreSessionCsrfGuard, set_session_cookie, sign_in_csrf_token
from rxroute.web.templating import render

WELCOME_COOKIE = "rxroute_welcome"
welcome_guard = PreSessionCsrfGuard(WELCOME_COOKIE, "/welcome")
router = APIRouter(include_in_schema=False, dependencies=[Depends(welcome_guard)])

GONE = {
    LinkState.USED: "This link has already been used to set a password.",
    LinkState.EXPIRED: "This link has expired.",
    LinkState.REVOKED: "This link was replaced by a newer one or cancelled.",
    LinkState.UNKNOWN: "This link is not valid: it may have been copied incompletely.",
}


def _gone(request: Request, state: LinkState) -> HTMLResponse:
    return render(
        request,
        "welcome_gone.html",
        {"message": GONE[state]},
        status_code=404 if state is LinkState.UNKNOWN else 410,
    )


def _form(
    request: Request,
    settings: Settings,
    context: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    nonce, fresh = welcome_guard.nonce(request)
    full = {
        "min_length": MIN_PASSWORD_LENGTH,
        "errors": {},
        **context,
        "welcome_csrf": sign_in_csrf_token(settings, nonce),
    }
    page = render(request, "welcome.html", full, status_code=status_code)
    if fresh:
        welcome_guard.set_cookie(page, settings, nonce)
    return page


@router.get("/welcome/{token}", response_class=HTMLResponse)
async def welcome_form(
    request: Request, session: SessionDep, runtime: RuntimeDep, token: str
) -> HTMLResponse:
    link = await view_link(session, token)
    if link.state is not LinkState.LIVE:
        return _gone(request, link.state)
    context = {"token": token, "purpose": link.purpose, "email": link.email}
    return _form(request, runtime.settings, context)


@router.post("/welcome/{token}", response_model=None)
async def welcome_submit(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    token: str,
    password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
    confirm_password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
) -> Response:
    settings = runtime.settings
    link = await view_link(session, token)
    if link.state is not LinkState.LIVE:
        return _gone(request, link.state)
    context = {"token": token, "purpose": link.purpose, "email": link.email}
    if password != confirm_password:
        errors = {"confirm_password": "The two passwords are not the same."}
        return _form(request, settings, {**context, "errors": errors}, status_code=422)
    try:
        signed_in = await set_password_with_link(session, runtime, token, password)
    except PasswordRefused as exc:
        message = str(exc)[0].upper() + str(exc)[1:] + "."
        return _form(request, settings, {**context, "errors": {"password": message}}, 422)
    except LinkUnusable as exc:
        return _gone(request, exc.state)
    # Whoever this browser was signed in as before, it is now this account.
    await end_cookie_session(request, session, settings)
    response = RedirectResponse(home_for_role(signed_in.role), status_code=303)
    set_session_cookie(response, settings, signed_in.token)
    response.delete_cookie(WELCOME_COOKIE, path="/welcome")
    return response
