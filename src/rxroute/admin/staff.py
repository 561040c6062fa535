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

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import audit
from rxroute.auth.accounts import set_user_active, sign_out_everywhere
from rxroute.auth.invitations import issue_link
from rxroute.auth.passwords import unusable_password_hash
from rxroute.auth.sessions import revoke_user_sessions
from rxroute.models import AuditAction, Invitation, InvitationPurpose, RevokeReason, Role, User
from rxroute.runtime import Runtime
from rxroute.timezones import utc_iso

#: The roles an admin may invite and move staff between (patients come from the API).
STAFF_ROLES = (Role.SUPPORT.value, Role.ADMIN.value)


class StaffActionRefused(Exception):
    """The action cannot be done; the message says why and what to do instead."""


@dataclass
class InviteInput:
    email: str = ""
    role: str = ""
    errors: dict[str, str] = field(default_factory=dict)


def check_email(raw: str) -> tuple[str | None, str | None]:
    """(normalised address, None) or (None, why not), by the ``email-validator`` library.

    No DNS lookup: an invitation to a domain that cannot receive mail bounces visibly.
    """
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        return None, f"Enter an email address like name@example.com ({exc})."
    return checked.normalized.lower(), None


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
        form.errors["role"] = "Choose the role: " + " or ".join(STAFF_ROLES) + "."
    if form.errors or email is None:
        return None
    user = User(
        id=uuid.uuid4(),
        email=email,
        role=form.role,
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


async def pending_invitations(session: AsyncSession, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these accounts were invited and have never used a link."""
    if not user_ids:
        return set()
    rows = await session.scalars(
        select(Invitation.user_id)
        .where(Invitation.user_id.in_(user_ids))
        .group_by(Invitation.user_id)
        .having(
            and_(
                func.bool_or(Invitation.purpose == InvitationPurpose.INVITE.value),
                func.bool_and(Invitation.used_at.is_(None)),
            )
        )
    )
    return set(rows)


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


async def change_role(session: AsyncSession, target: User, role: str, *, actor: User) -> bool:
    """Move a staff account to another staff role; False when it already had it."""
    if target.id == actor.id:
        raise StaffActionRefused("you cannot change your own role; ask another admin to do it")
    if target.role not in STAFF_ROLES:
        raise StaffActionRefused("only staff accounts change role; a patient's account stays one")
    if role not in STAFF_ROLES:
        raise StaffActionRefused("choose the role: " + " or ".join(STAFF_ROLES))
    before = audit.snapshot(target)
    target.role = role
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
