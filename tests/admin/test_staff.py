"""Staff management through the admin pages (with their CSRF tokens): invite, change role,
reset password, resend an invitation, deactivate, each in the audit trail with a message."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.passwords import verify_password
from rxroute.mailcatcher import MailCatcher
from rxroute.models import AdminAuditEvent, Invitation, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.auth.helpers import form_token, post_login
from tests.invitation_mail import catcher as catcher  # a fixture
from tests.invitation_mail import invitation_jobs, run_invitation_jobs, token_in
from tests.invitation_mail import mail as mail  # a fixture
from tests.staff_pages import csrf_for, sign_in

HTML = {"Accept": "text/html"}
NEW_PASSWORD = "a brand new passphrase"


async def _post(client: httpx.AsyncClient, path: str, **data: str) -> httpx.Response:
    token = await csrf_for(client, "/admin/users")
    return await client.post(path, data={"csrf_token": token, **data}, headers=HTML)


async def _events(session: AsyncSession, user_id: Any) -> list[AdminAuditEvent]:
    return list(
        await session.scalars(
            select(AdminAuditEvent)
            .where(AdminAuditEvent.entity_id == user_id)
            .order_by(AdminAuditEvent.seq)
        )
    )


async def _fresh(session: AsyncSession, email: str) -> User:
    found = await session.scalar(
        select(User).where(User.email == email).execution_options(populate_existing=True)
    )
    assert found is not None
    return found


async def _flash(client: httpx.AsyncClient, response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    page = await client.get(response.headers["location"], headers=HTML)
    return page.text


async def test_invite_creates_an_inactive_account_and_emails_its_link(
    as_admin: httpx.AsyncClient,
    admin: User,
    session: AsyncSession,
    mail: Runtime,
    catcher: MailCatcher,
) -> None:
    response = await _post(
        as_admin, "/admin/users/invite", email="New.Agent@Example.com", role="support"
    )
    assert "new.agent@example.com invited" in await _flash(as_admin, response)
    invited = await _fresh(session, "new.agent@example.com")
    assert (invited.role, invited.active) == ("support", False)
    [event] = await _events(session, invited.id)
    assert (event.actor_user_id, event.entity_type, event.action) == (admin.id, "user", "invited")
    assert event.changes["role"] == {"before": None, "after": "support"}
    assert "emailed" in event.changes["set_password_link"]["after"]

    assert await run_invitation_jobs(mail) == ["sent"]
    [message] = catcher.messages()
    assert message.envelope_to == ("new.agent@example.com",)
    token = token_in(message)
    async with httpx.AsyncClient(
        transport=as_admin._transport, base_url="http://rxroute.test"
    ) as invitee:
        page = await invitee.get(f"/welcome/{token}", headers=HTML)
        done = await invitee.post(
            f"/welcome/{token}",
            data={
                "csrf_token": form_token(page.text),
                "password": NEW_PASSWORD,
                "confirm_password": NEW_PASSWORD,
            },
        )
        assert (done.status_code, done.headers["location"]) == (303, "/support")
    active = await _fresh(session, "new.agent@example.com")
    assert active.active and verify_password(active.password_hash, NEW_PASSWORD)
    listing = await as_admin.get("/admin/users", headers=HTML)
    assert "Resend invitation" not in listing.text.split(active.email)[1].split("</tr>")[0]


async def test_invite_form_errors_keep_what_was_typed(
    as_admin: httpx.AsyncClient, admin: User, db: Runtime
) -> None:
    bad = await _post(as_admin, "/admin/users/invite", email="not-an-email", role="support")
    assert bad.status_code == 422
    assert "Enter an email address like name@example.com" in bad.text
    assert 'value="not-an-email"' in bad.text
    taken = await _post(as_admin, "/admin/users/invite", email=admin.email.upper(), role="admin")
    assert taken.status_code == 422 and "already exists" in taken.text
    role = await _post(as_admin, "/admin/users/invite", email="x@example.com", role="patient")
    assert role.status_code == 422 and "Choose the role" in role.text
    assert await invitation_jobs(db) == []


async def test_a_prescriber_is_linked_to_one_prescriber_record(
    as_admin: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    record = await factories.make_prescriber(session, db.secret_box, full_name="Dr Quill")
    await session.commit()
    missing = await _post(
        as_admin, "/admin/users/invite", email="dr@example.com", role="prescriber"
    )
    assert missing.status_code == 422 and "Choose the prescriber record" in missing.text
    assert "Dr Quill" in missing.text
    ok = await _post(
        as_admin,
        "/admin/users/invite",
        email="dr@example.com",
        role="prescriber",
        prescriber_id=str(record.id),
    )
    assert ok.status_code == 303
    doctor = await _fresh(session, "dr@example.com")
    assert (doctor.role, doctor.prescriber_id) == ("prescriber", record.id)
    again = await _post(
        as_admin,
        "/admin/users/invite",
        email="dr2@example.com",
        role="prescriber",
        prescriber_id=str(record.id),
    )
    assert (
        again.status_code == 422 and "already belongs to the account dr@example.com" in again.text
    )


async def test_change_role_is_audited_and_an_admin_cannot_change_their_own(
    as_admin: httpx.AsyncClient, admin: User, session: AsyncSession, db: Runtime
) -> None:
    agent = await factories.make_user(session, Role.SUPPORT)
    patient = await factories.make_user(session, Role.PATIENT)
    await session.commit()
    response = await _post(as_admin, f"/admin/users/{agent.id}/role", role="admin")
    assert f"{agent.email}&#39;s role changed" in await _flash(as_admin, response)
    assert (await _fresh(session, agent.email)).role == "admin"
    [event] = await _events(session, agent.id)
    assert (event.action, event.changes) == (
        "updated",
        {"role": {"before": "support", "after": "admin"}},
    )

    own = await _post(as_admin, f"/admin/users/{admin.id}/role", role="support")
    assert own.status_code == 409
    assert "you cannot change your own role" in own.text
    assert (await _fresh(session, admin.email)).role == "admin"
    assert await _events(session, admin.id) == []

    refused = await _post(as_admin, f"/admin/users/{patient.id}/role", role="support")
    assert refused.status_code == 409 and "patient" in refused.text
    no_record = await _post(as_admin, f"/admin/users/{agent.id}/role", role="prescriber")
    assert no_record.status_code == 422 and "prescriber record" in no_record.text


async def test_deactivation_ends_sessions_and_is_audited(
    as_admin: httpx.AsyncClient, admin: User, session: AsyncSession
) -> None:
    agent = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    async with httpx.AsyncClient(
        transport=as_admin._transport, base_url="http://rxroute.test"
    ) as elsewhere:
        await sign_in(elsewhere, agent)
        assert (await elsewhere.get("/api/v1/auth/me")).status_code == 200
        response = await _post(as_admin, f"/admin/users/{agent.id}/active", active="0")
        assert "deactivated and signed out everywhere" in await _flash(as_admin, response)
        assert (await elsewhere.get("/api/v1/auth/me")).status_code == 401
    [event] = await _events(session, agent.id)
    assert (event.action, event.changes) == (
        "deactivated",
        {"active": {"before": True, "after": False}},
    )
    own = await _post(as_admin, f"/admin/users/{admin.id}/active", active="0")
    assert own.status_code == 409 and "cannot deactivate your own account" in own.text


async def test_reset_password_ends_sessions_stops_the_old_password_and_emails_a_link(
    as_admin: httpx.AsyncClient,
    admin: User,
    session: AsyncSession,
    mail: Runtime,
    catcher: MailCatcher,
) -> None:
    agent = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    async with httpx.AsyncClient(
        transport=as_admin._transport, base_url="http://rxroute.test"
    ) as elsewhere:
        await sign_in(elsewhere, agent)
        response = await _post(as_admin, f"/admin/users/{agent.id}/reset-password")
        assert "password was reset" in await _flash(as_admin, response)
        assert (await elsewhere.get("/api/v1/auth/me")).status_code == 401
        old = await post_login(elsewhere, agent.email, factories.PASSWORD)
        assert old.status_code == 401
    [event] = await _events(session, agent.id)
    assert event.action == "password-reset"
    assert event.changes["password"] == {"secret": "removed"}
    assert await run_invitation_jobs(mail) == ["sent"]
    [message] = catcher.messages()
    assert message.subject == "Set a new password for rxroute"
    assert message.envelope_to == (agent.email,)

    own = await _post(as_admin, f"/admin/users/{admin.id}/reset-password")
    assert own.status_code == 409 and "Change password" in own.text


async def test_resend_invite_replaces_the_link_only_for_pending_accounts(
    as_admin: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    await _post(as_admin, "/admin/users/invite", email="pending@example.com", role="admin")
    pending = await _fresh(session, "pending@example.com")
    listing = await as_admin.get("/admin/users", headers=HTML)
    assert "invited, password not set yet" in listing.text
    response = await _post(as_admin, f"/admin/users/{pending.id}/resend-invite")
    assert "A new invitation was sent to pending@example.com" in await _flash(as_admin, response)
    links = list(
        await session.scalars(
            select(Invitation)
            .where(Invitation.user_id == pending.id)
            .order_by(Invitation.created_at)
        )
    )
    assert [link.revoked_at is not None for link in links] == [True, False]
    assert [e.action for e in await _events(session, pending.id)] == ["invited", "invite-resent"]
    assert len(await invitation_jobs(db)) == 2

    settled = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    refused = await _post(as_admin, f"/admin/users/{settled.id}/resend-invite")
    assert refused.status_code == 409 and "Reset password" in refused.text


async def test_sign_out_everywhere_is_audited_and_user_changes_are_on_the_audit_page(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    agent = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    await _post(as_admin, f"/admin/users/{agent.id}/sign-out")
    [event] = await _events(session, agent.id)
    assert event.action == "signed-out"
    page = await as_admin.get("/admin/audit?entity=user", headers=HTML)
    assert f"user {agent.email}: signed-out" in page.text


async def test_staff_actions_need_the_csrf_token_and_an_admin(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await factories.make_user(session, Role.ADMIN)
    agent = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    await sign_in(client, admin)
    for path in (
        "/admin/users/invite",
        f"/admin/users/{agent.id}/role",
        f"/admin/users/{agent.id}/reset-password",
        f"/admin/users/{agent.id}/resend-invite",
    ):
        forged = await client.post(path, data={"email": "x@example.com", "role": "admin"})
        assert forged.status_code == 403, path
    await sign_in(client, agent)
    token = await csrf_for(client, "/support")
    as_support = await client.post(
        "/admin/users/invite",
        data={"csrf_token": token, "email": "x@example.com", "role": "admin"},
        headers=HTML,
    )
    assert as_support.status_code == 403
    assert await _events(session, agent.id) == []
