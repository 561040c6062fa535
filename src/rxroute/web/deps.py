"""Who is looking at a page. Unauthenticated visitors are sent to the sign-in page."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

from rxroute.auth.dependencies import SESSION_COOKIE, RuntimeDep, SessionDep, user_for_token
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


class LoginRequired(Exception):
    """Handled by the app: redirect to ``/login?next=...``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def login_url(next_url: str) -> str:
    return f"/login?next={quote(next_url, safe='/')}"


async def page_user(request: Request, session: SessionDep, runtime: RuntimeDep) -> User:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired(request.url.path)
    try:
        user = await user_for_token(session, runtime.settings, token)
    except InvalidToken as exc:
        raise LoginRequired(request.url.path) from exc
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

StaffPageUser = Annotated[User, Depends(require_staff_page)]
AdminPageUser = Annotated[User, Depends(require_admin_page)]
PatientPageUser = Annotated[User, Depends(page_roles(Role.PATIENT))]


def home_for(user: User) -> str:
    match user.role:
        case Role.PATIENT.value:
            return "/prescriptions"
        case Role.SUPPORT.value:
            return "/support"
        case _:
            return "/admin"
