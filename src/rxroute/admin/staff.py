"""Staff management, the rules: invite, change role, reset password, resend an invitation,
(de)activate and sign out everywhere, each recorded in the admin audit trail.

An invited account is created inactive with an unusable password hash; the emailed link
(:mod:`rxroute.auth.invitations`) sets the password and activates it. "Pending" means an
account was invited and has never used a link. An admin cannot change their own role,
deactivate themselves or reset their own password (they would lock themselves out; another
admin must do it). Services: they never commit (the request does).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import audit
from rxroute.auth.accounts import set_user_active, sign_out_everywhere
from rxroute.auth.invitations import issue_link, pending_invitations
from rxroute.auth.passwords import unusable_password_hash
from rxroute.auth.sessions import revoke_user_sessions
from rxroute.emails import check_email
from rxroute.models import (
    AuditAction,
    InvitationPurpose,
    Prescriber,
    RevokeReason,
    Role,
    User,
)
from rxroute.runtime import Runtime
from rxroute.timezones import utc_iso

#: The roles an admin may invite and move staff between (patients come from the API).
STAFF_ROLES = (Role.SUPPORT.value, Role.ADMIN.value, Role.PRESCRIBER.value)


class StaffActionRefused(Exception):
    """The action cannot be done; the message says why and what to do instead."""


class StaffInputRefused(StaffActionRefused):
    """What was chosen in the form is not acceptable (a 422 rather than a 409)."""


@dataclass
class InviteInput:
    email: str = ""
    role: str = ""
    #: For a prescriber: the prescriber record they write prescriptions as.
    prescriber_id: str = ""
    errors: dict[str, str] = field(default_factory=dict)


async def prescriber_choices(session: AsyncSession) -> list[Prescriber]:
    """Active prescriber records, for the select on the invite and role forms."""
    return list(
        await session.scalars(
            select(Prescriber).where(Prescriber.active.is_(True)).order_by(Prescriber.full_name)
        )
    )


async def _prescriber_problem(
    session: AsyncSession, role: str, raw_id: str, *, user_id: uuid.UUID | None
) -> tuple[uuid.UUID | None, str | None]:
    """(the prescriber record to link, None) or (None, why not). Only a prescriber is
    linked to one, and one record belongs to at most one account."""
    if role != Role.PRESCRIBER.value:
        return None, None
    try:
        prescriber_id = uuid.UUID(raw_id.strip())
    except ValueError:
        return None, "Choose the prescriber record this person writes prescriptions as."
    prescriber = await session.get(Prescriber, prescriber_id)
    if prescriber is None or not prescriber.active:
        return None, "Choose an active prescriber record."
    holders = select(User.email).where(User.prescriber_id == prescriber_id)
    if user_id is not None:
        holders = holders.where(User.id != user_id)
    holder = await session.scalar(holders.limit(1))
    if holder is not None:
        return None, f"This prescriber record already belongs to the account {holder}."
    return prescriber_id, None


async def email_taken(session: AsyncSession, email: str) -> bool:
    found = await session.scalar(
        select(func.count()).select_from(User).where(func.lower(User.email) == email.lower())
    )
    return bool(found)


def _link_note(expires_at: datetime) -> dict[str, object]:
    return {
        "set_password_link": {
            "before": None,
            "after": f"emailed, valid until {utc_iso(expires_at)}",
        }
    }


async def invite_staff(
    session: AsyncSession, runtime: Runtime, form: InviteInput, *, actor: User
) -> User | None:
    """Create the inactive account and email its link; None (with ``form.errors``) when the
    input is not acceptable."""
    email, problem = check_email(form.email)
    if problem:
        form.errors["email"] = problem
    elif email and await email_taken(session, email):
        form.errors["email"] = "An account with this email already exists."
    if form.role not in STAFF_ROLES:
        form.errors["role"] = "Choose the role: " + ", ".join(STAFF_ROLES) + "."
    prescriber_id, linked = await _prescriber_problem(
        session, form.role, form.prescriber_id, user_id=None
    )
    if linked:
        form.errors["prescriber_id"] = linked
    if form.errors or email is None:
        return None
    user = User(
        id=uuid.uuid4(),
        email=email,
        role=form.role,
        prescriber_id=prescriber_id,
        password_hash=unusable_password_hash(),
        active=False,
    )
    session.add(user)
    await session.flush()
    link = await issue_link(session, runtime, user, InvitationPurpose.INVITE, created_by=actor.id)
    audit.record(
        session, actor.id, user, None, action=AuditAction.INVITED, extra=_link_note(link.expires_at)
    )
    await session.flush()
    return user


async def resend_invite(
    session: AsyncSession, runtime: Runtime, target: User, *, actor: User
) -> None:
    """A new invitation link (the earlier ones stop working) for a pending account."""
    if target.id not in await pending_invitations(session, [target.id]):
        raise StaffActionRefused(
            "this account has already set its password (or was never invited): "
            "use Reset password instead"
        )
    link = await issue_link(session, runtime, target, InvitationPurpose.INVITE, created_by=actor.id)
    before = audit.snapshot(target)
    audit.record(
        session,
        actor.id,
        target,
        before,
        action=AuditAction.INVITE_RESENT,
        extra=_link_note(link.expires_at),
    )
    await session.flush()


async def reset_password(
    session: AsyncSession, runtime: Runtime, target: User, *, actor: User
) -> None:
    """The old password stops working, every session ends, and a reset link is emailed."""
    if target.id == actor.id:
        raise StaffActionRefused(
            "you cannot reset your own password here; use Change password, or ask another admin"
        )
    if not target.active:
        raise StaffActionRefused(
            "this account is not active: reactivate it first (or, if it was never set up, "
            "resend its invitation)"
        )
    before = audit.snapshot(target)
    target.password_hash = unusable_password_hash()
    await session.flush()
    await revoke_user_sessions(session, target.id, RevokeReason.PASSWORD_CHANGED)
    link = await issue_link(session, runtime, target, InvitationPurpose.RESET, created_by=actor.id)
    audit.record(
        session,
        actor.id,
        target,
        before,
        action=AuditAction.PASSWORD_RESET,
        extra={"password": {"secret": "removed"}, **_link_note(link.expires_at)},
    )
    await session.flush()


async def change_role(
    session: AsyncSession, target: User, role: str, *, actor: User, prescriber_id: str = ""
) -> bool:
    """Move a staff account to another staff role (a prescriber linked to their prescriber
    record, any other role to none); False when nothing changed."""
    if target.id == actor.id:
        raise StaffActionRefused("you cannot change your own role; ask another admin to do it")
    if target.role not in STAFF_ROLES:
        raise StaffActionRefused("only staff accounts change role; a patient's account stays one")
    if role not in STAFF_ROLES:
        raise StaffInputRefused("choose the role: " + ", ".join(STAFF_ROLES))
    if role == Role.PRESCRIBER.value and not prescriber_id and target.prescriber_id:
        prescriber_id = str(target.prescriber_id)  # keeps the record it already has
    linked_id, problem = await _prescriber_problem(session, role, prescriber_id, user_id=target.id)
    if problem:
        raise StaffInputRefused(problem[0].lower() + problem[1:].rstrip("."))
    before = audit.snapshot(target)
    target.role = role
    target.prescriber_id = linked_id
    await session.flush()
    return audit.record(session, actor.id, target, before) is not None


async def set_active(session: AsyncSession, target: User, active: bool, *, actor: User) -> None:
    """(De)activate; deactivating ends the sessions and cancels emailed links."""
    if not active and target.id == actor.id:
        raise StaffActionRefused(
            "you cannot deactivate your own account; ask another admin to do it"
        )
    before = audit.snapshot(target)
    await set_user_active(session, target, active)
    action = AuditAction.ACTIVATED if active else AuditAction.DEACTIVATED
    audit.record(session, actor.id, target, before, action=action)
    await session.flush()


async def sign_out(session: AsyncSession, target: User, *, actor: User) -> int:
    ended = await sign_out_everywhere(session, target)
    audit.record(
        session,
        actor.id,
        target,
        audit.snapshot(target),
        action=AuditAction.SIGNED_OUT,
        extra={"sessions": {"before": ended, "after": 0}},
    )
    await session.flush()
    return ended
