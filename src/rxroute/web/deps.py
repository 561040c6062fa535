"""Who is looking at a page. Unauthenticated visitors are sent to the sign-in page."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from starlette.routing import Match

from rxroute.auth.csrf import SAFE_METHODS
from rxroute.auth.dependencies import (
    SESSION_COOKIE,
    RuntimeDep,
    SessionDep,
    authenticate_request,
)
from rxroute.auth.tokens import InvalidToken
from rxroute.models import Role, User


@dataclass(frozen=True)
class Viewer:
    """Who the page is for, as plain values for the templates.

    Not the ORM ``User``: an error page is rendered after the request's transaction has
    rolled back, when the ORM object's attributes are expired and can no longer be loaded.
    """

    id: uuid.UUID
    email: str
    role: str


class LoginNotice(enum.StrEnum):
    """What the sign-in page tells someone sent there (a fixed set: no text from the URL)."""

    #: The session ended (signed out elsewhere, by an admin, or it expired).
    ENDED = "ended"
    #: ...and the form just submitted was not saved.
    UNSAVED = "unsaved"


class LoginRequired(Exception):
    """Handled by the app: redirect to ``/login?next=...`` (see :func:`login_url`)."""

    def __init__(self, next_url: str, notice: LoginNotice | None = None) -> None:
        super().__init__(next_url)
        self.next_url = next_url
        self.notice = notice


def login_url(next_url: str, notice: LoginNotice | None = None) -> str:
    url = f"/login?next={quote(next_url, safe='/')}"
    return f"{url}&notice={notice.value}" if notice else url


def _has_page(request: Request, path: str) -> bool:
    scope = {**request.scope, "method": "GET", "path": path}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)


def return_to(request: Request) -> str:
    """Where to come back to after signing in: the page itself for a GET; for a form post,
    the nearest page up its path (``/prescriptions/<id>/send`` -> ``/prescriptions/<id>``),
    since the post itself cannot be replayed."""
    path = request.url.path
    if request.method in SAFE_METHODS:
        return path
    while path not in ("", "/"):
        if _has_page(request, path):
            return path
        path = path.rsplit("/", 1)[0]
    return "/"


async def page_user(request: Request, session: SessionDep, runtime: RuntimeDep) -> User:
    """The signed-in user, else a redirect to sign in that says why: a page whose session
    ended says so, and a form posted on an ended session says it was not saved."""
    posted = request.method not in SAFE_METHODS
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired(return_to(request), LoginNotice.UNSAVED if posted else None)
    try:
        found = await authenticate_request(request, session, runtime.settings, token)
    except InvalidToken as exc:
        notice = LoginNotice.UNSAVED if posted else LoginNotice.ENDED
        raise LoginRequired(return_to(request), notice) from exc
    user = found.user
    request.state.user = Viewer(id=user.id, email=user.email, role=user.role)
    return user


PageUser = Annotated[User, Depends(page_user)]


def page_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, User]]:
    allowed = {role.value for role in roles}

    async def checker(user: PageUser) -> User:
        if user.role not in allowed:
            raise HTTPException(status_code=403, detail="this page is not for your account")
        return user

    return checker


#: The role checks, as named callables: routers declare them in ``dependencies=`` and
#: handlers take the same callable's user (FastAPI runs it once per request).
require_staff_page = page_roles(Role.SUPPORT, Role.ADMIN)
require_admin_page = page_roles(Role.ADMIN)
require_prescriber_page = page_roles(Role.PRESCRIBER)

StaffPageUser = Annotated[User, Depends(require_staff_page)]
AdminPageUser = Annotated[User, Depends(require_admin_page)]
PatientPageUser = Annotated[User, Depends(page_roles(Role.PATIENT))]
PrescriberPageUser = Annotated[User, Depends(require_prescriber_page)]


def home_for(user: User) -> str:
    return home_for_role(user.role)


def home_for_role(role: str) -> str:
    match role:
        case Role.PATIENT.value:
            return "/prescriptions"
        case Role.SUPPORT.value:
            return "/support"
        case Role.PRESCRIBER.value:
            return "/prescriber"
        case _:
            return "/admin"
