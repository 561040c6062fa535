"""Sign-in and sign-out pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from rxroute.auth.dependencies import SESSION_COOKIE, RuntimeDep, SessionDep, user_for_token
from rxroute.auth.passwords import verify_password
from rxroute.auth.tokens import InvalidToken, issue_token
from rxroute.models import User
from rxroute.web.deps import home_for
from rxroute.web.security import (
    clear_session_cookie,
    limiter_keys,
    set_session_cookie,
    sign_in_limiter,
)
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

WRONG_CREDENTIALS = "Email or password is wrong."


def _safe_next(next_url: str | None) -> str | None:
    """Only same-site paths: an open redirect would make our sign-in page a phishing aid."""
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return None


@router.get("/", response_model=None)
async def root(request: Request, session: SessionDep, runtime: RuntimeDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            user = await user_for_token(session, runtime.settings, token)
        except InvalidToken:
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse(home_for(user), status_code=303)
    return RedirectResponse("/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", {"next": _safe_next(next) or "", "email": ""})


@router.post("/login", response_model=None)
async def login(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    keys = limiter_keys(request, email)
    wait = sign_in_limiter.retry_after(keys)
    if wait:
        return render(
            request,
            "login.html",
            {
                "error": f"Too many attempts. Try again in {wait} seconds.",
                "email": email,
                "next": _safe_next(next) or "",
            },
            status_code=429,
        )
    errors: dict[str, str] = {}
    if not email.strip():
        errors["email"] = "Enter your email address."
    if not password:
        errors["password"] = "Enter your password."  # noqa: S105 - a form message
    if errors:
        return render(
            request,
            "login.html",
            {"errors": errors, "email": email, "next": _safe_next(next) or ""},
            status_code=422,
        )
    user = await session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None or not user.active or not verify_password(user.password_hash, password):
        sign_in_limiter.failed(keys)
        return render(
            request,
            "login.html",
            {"error": WRONG_CREDENTIALS, "email": email, "next": _safe_next(next) or ""},
            status_code=401,
        )
    sign_in_limiter.succeeded(keys)
    settings = runtime.settings
    token = issue_token(settings.session_secret.get_secret_value(), user.id, user.role)
    response = RedirectResponse(_safe_next(next) or home_for(user), status_code=303)
    set_session_cookie(response, settings, token)
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    # No CSRF check needed: signing someone out is harmless and the cookie is SameSite.
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response)
    return response
