"""Admin: the accounts that sign in, with "sign out everywhere" and (de)activation.

Both end the account's sessions server-side at once (browsers and API tokens alike), see
:mod:`rxroute.auth.accounts`. Listed by role then email, a page at a time; no search box,
so no email address ends up in a URL.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import case, func, select

from rxroute.auth.accounts import set_user_active, sign_out_everywhere
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.auth.sessions import live_session_counts
from rxroute.models import Role, User
from rxroute.web.deps import AdminPageUser
from rxroute.web.security import require_csrf
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
MAX_PAGE = 100_000
FLASHES = {
    "signed-out": "{email} signed out everywhere: every browser and API token of it stopped.",
    "deactivated": "{email} deactivated and signed out everywhere.",
    "reactivated": "{email} reactivated: they can sign in again.",
}
_ROLE_ORDER = case(
    (User.role == Role.ADMIN.value, 0), (User.role == Role.SUPPORT.value, 1), else_=2
)


async def _user(session: SessionDep, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="no such user")
    return user


@router.get("/users", response_class=HTMLResponse)
async def users(
    request: Request,
    session: SessionDep,
    user: AdminPageUser,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    done: Annotated[str, Query(max_length=20)] = "",
    who: uuid.UUID | None = None,
) -> HTMLResponse:
    total = await session.scalar(select(func.count()).select_from(User)) or 0
    rows = list(
        await session.scalars(
            select(User)
            .order_by(_ROLE_ORDER, User.email)
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE)
        )
    )
    counts = await live_session_counts(session, [row.id for row in rows])
    flash = None
    if done in FLASHES and who is not None:
        subject = await session.get(User, who)
        flash = FLASHES[done].format(email=subject.email if subject else "the account")
    return render(
        request,
        "admin/users.html",
        {
            "users": rows,
            "sessions": counts,
            "flash": flash,
            "page": page,
            "more": page * PAGE_SIZE < total,
            "total": total,
            "me": user.id,
        },
    )


@router.post("/users/{user_id}/sign-out", response_model=None)
async def sign_out_user(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    admin: AdminPageUser,
    user_id: uuid.UUID,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    page: Annotated[int, Form(ge=1, le=MAX_PAGE)] = 1,
) -> RedirectResponse:
    require_csrf(runtime.settings, request, csrf_token)
    target = await _user(session, user_id)
    await sign_out_everywhere(session, target)
    return RedirectResponse(f"/admin/users?page={page}&done=signed-out&who={user_id}", 303)


@router.post("/users/{user_id}/active", response_model=None)
async def set_active(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    admin: AdminPageUser,
    user_id: uuid.UUID,
    active: Annotated[str, Form(pattern="^[01]$")],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    page: Annotated[int, Form(ge=1, le=MAX_PAGE)] = 1,
) -> RedirectResponse:
    require_csrf(runtime.settings, request, csrf_token)
    target = await _user(session, user_id)
    turn_on = active == "1"
    if not turn_on and target.id == admin.id:
        raise HTTPException(
            status_code=409,
            detail="you cannot deactivate your own account; ask another admin to do it",
        )
    await set_user_active(session, target, turn_on)
    done = "reactivated" if turn_on else "deactivated"
    return RedirectResponse(f"/admin/users?page={page}&done={done}&who={user_id}", 303)
