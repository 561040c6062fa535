"""Admin: the accounts that sign in, and staff management.

Invite a support, admin or prescriber user by email (a prescriber linked to their
prescriber record), change a staff account's role, reset a password,
resend an invitation, deactivate or reactivate, and "sign out everywhere". The rules (and
the audit trail entries) are in :mod:`rxroute.admin.staff`; this module is the pages. The
router's dependencies check the admin role and the CSRF token of every POST.

Deactivating, resetting a password and "sign out everywhere" end the account's sessions
server-side at once (browsers and API tokens alike), see :mod:`rxroute.auth.accounts`.
Listed by role then email, a page at a time; no search box, so no email address ends up
in a URL.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import case, func, select

from rxroute.admin import staff
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.auth.invitations import pending_invitations
from rxroute.auth.sessions import live_session_counts
from rxroute.models import Role, User
from rxroute.web.deps import AdminPageUser
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
MAX_PAGE = 100_000
FLASHES = {
    "signed-out": "{email} signed out everywhere: every browser and API token of it stopped.",
    "deactivated": "{email} deactivated and signed out everywhere; its emailed links stopped.",
    "reactivated": "{email} reactivated: they can sign in again.",
    "invited": "{email} invited: a link to set their password is on its way.",
    "invite-resent": "A new invitation was sent to {email}; the earlier link no longer works.",
    "reset": (
        "{email}'s password was reset: their sessions ended and a link to choose a new "
        "password is on its way."
    ),
    "role-changed": "{email}'s role changed.",
    "role-unchanged": "{email} already had that role: nothing changed.",
}
_ROLE_ORDER = case(
    (User.role == Role.ADMIN.value, 0),
    (User.role == Role.SUPPORT.value, 1),
    (User.role == Role.PRESCRIBER.value, 2),
    else_=3,
)
PageNumber = Annotated[int, Form(ge=1, le=MAX_PAGE)]


async def _user(session: SessionDep, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="no such user")
    return user


def _done(page: int, done: str, user_id: uuid.UUID) -> RedirectResponse:
    return RedirectResponse(f"/admin/users?page={page}&done={done}&who={user_id}", 303)


@contextlib.contextmanager
def _refusals_answered() -> Iterator[None]:
    """A staff action the rules refuse becomes its HTTP answer (one place for all of them)."""
    try:
        yield
    except staff.StaffActionRefused as exc:
        raise _refused(exc) from None


def _refused(exc: staff.StaffActionRefused) -> HTTPException:
    code = 422 if isinstance(exc, staff.StaffInputRefused) else 409
    return HTTPException(status_code=code, detail=str(exc))


async def _users_page(
    request: Request,
    session: SessionDep,
    admin: User,
    *,
    page: int = 1,
    flash: str | None = None,
    invite: staff.InviteInput | None = None,
    status_code: int = 200,
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
    ids = [row.id for row in rows]
    context: dict[str, Any] = {
        "users": rows,
        "sessions": await live_session_counts(session, ids),
        "pending": await pending_invitations(session, ids),
        "staff_roles": staff.STAFF_ROLES,
        "prescribers": await staff.prescriber_choices(session),
        "invite": invite or staff.InviteInput(),
        "flash": flash,
        "page": page,
        "more": page * PAGE_SIZE < total,
        "total": total,
        "me": admin.id,
    }
    return render(request, "admin/users.html", context, status_code=status_code)


@router.get("/users", response_class=HTMLResponse)
async def users(
    request: Request,
    session: SessionDep,
    user: AdminPageUser,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    done: Annotated[str, Query(max_length=20)] = "",
    who: uuid.UUID | None = None,
) -> HTMLResponse:
    flash = None
    if done in FLASHES and who is not None:
        subject = await session.get(User, who)
        flash = FLASHES[done].format(email=subject.email if subject else "the account")
    return await _users_page(request, session, user, page=page, flash=flash)


@router.post("/users/invite", response_model=None)
async def invite(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    admin: AdminPageUser,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    prescriber_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    form = staff.InviteInput(email=email, role=role, prescriber_id=prescriber_id)
    created = await staff.invite_staff(session, runtime, form, actor=admin)
    if created is None:
        return await _users_page(request, session, admin, invite=form, status_code=422)
    return _done(1, "invited", created.id)


@router.post("/users/{user_id}/role", response_model=None)
async def change_role(
    session: SessionDep,
    admin: AdminPageUser,
    user_id: uuid.UUID,
    role: Annotated[str, Form(max_length=20)],
    prescriber_id: Annotated[str, Form(max_length=40)] = "",
    page: PageNumber = 1,
) -> RedirectResponse:
    target = await _user(session, user_id)
    with _refusals_answered():
        changed = await staff.change_role(
            session, target, role, actor=admin, prescriber_id=prescriber_id
        )
    return _done(page, "role-changed" if changed else "role-unchanged", user_id)


@router.post("/users/{user_id}/reset-password", response_model=None)
async def reset_password(
    session: SessionDep,
    runtime: RuntimeDep,
    admin: AdminPageUser,
    user_id: uuid.UUID,
    page: PageNumber = 1,
) -> RedirectResponse:
    target = await _user(session, user_id)
    with _refusals_answered():
        await staff.reset_password(session, runtime, target, actor=admin)
    return _done(page, "reset", user_id)


@router.post("/users/{user_id}/resend-invite", response_model=None)
async def resend_invite(
    session: SessionDep,
    runtime: RuntimeDep,
    admin: AdminPageUser,
    user_id: uuid.UUID,
    page: PageNumber = 1,
) -> RedirectResponse:
    target = await _user(session, user_id)
    with _refusals_answered():
        await staff.resend_invite(session, runtime, target, actor=admin)
    return _done(page, "invite-resent", user_id)


@router.post("/users/{user_id}/sign-out", response_model=None)
async def sign_out_user(
    session: SessionDep,
    admin: AdminPageUser,
    user_id: uuid.UUID,
    page: PageNumber = 1,
) -> RedirectResponse:
    target = await _user(session, user_id)
    await staff.sign_out(session, target, actor=admin)
    return _done(page, "signed-out", user_id)


@router.post("/users/{user_id}/active", response_model=None)
async def set_active(
    session: SessionDep,
    admin: AdminPageUser,
    user_id: uuid.UUID,
    active: Annotated[str, Form(pattern="^[01]$")],
    page: PageNumber = 1,
) -> RedirectResponse:
    target = await _user(session, user_id)
    turn_on = active == "1"
    with _refusals_answered():
        await staff.set_active(session, target, turn_on, actor=admin)
    return _done(page, "reactivated" if turn_on else "deactivated", user_id)
