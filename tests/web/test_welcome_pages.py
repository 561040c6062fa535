"""The welcome page: an emailed link sets the password (the password-change rule), signs in
and goes to the account's home; used, expired, replaced and unknown links say to ask again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth import invitations
from rxroute.auth.passwords import verify_password
from rxroute.models import AuthSession, Invitation, InvitationPurpose, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.auth.helpers import form_token
from tests.web.helpers import HTML, sign_in

NEW_PASSWORD = "a brand new passphrase"


async def _invite(
    db: Runtime, user_id: object, purpose: InvitationPurpose = InvitationPurpose.INVITE
) -> invitations.IssuedLink:
    async with db.sessionmaker() as s, s.begin():
        user = await s.get(User, user_id)
        assert user is not None
        return await invitations.issue_link(s, db, user, purpose, created_by=None)


async def _invited(session: AsyncSession, role: Role = Role.SUPPORT) -> User:
    patient = await factories.make_patient(session) if role is Role.PATIENT else None
    user = await factories.make_user(session, role, patient=patient)
    user.active = False
    await session.commit()
    return user


async def _submit(
    client: httpx.AsyncClient, token: str, password: str, confirm: str | None = None
) -> httpx.Response:
    page = await client.get(f"/welcome/{token}", headers=HTML)
    assert page.status_code == 200, page.text
    data = {
        "csrf_token": form_token(page.text),
        "password": password,
        "confirm_password": password if confirm is None else confirm,
    }
    return await client.post(f"/welcome/{token}", data=data, headers=HTML)


async def test_setting_the_password_signs_in_and_goes_home(
    client: httpx.AsyncClient, db: Runtime, session: AsyncSession
) -> None:
    user = await _invited(session)
    link = await _invite(db, user.id)
    page = await client.get(f"/welcome/{link.token}", headers=HTML)
    assert page.status_code == 200
    assert user.email in page.text and "Welcome to rxroute" in page.text
    response = await _submit(client, link.token, NEW_PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/support"
    assert client.cookies.get("rxroute_session")
    me = await client.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["email"] == user.email
    async with db.sessionmaker() as s:
        fresh = await s.get(User, user.id)
        assert fresh is not None and fresh.active
        assert verify_password(fresh.password_hash, NEW_PASSWORD)
    # The link is spent: a second visit says so.
    again = await client.get(f"/welcome/{link.token}", headers=HTML)
    assert again.status_code == 410
    assert "already been used" in again.text and "Ask for a new link" in again.text


async def test_a_patient_lands_on_their_prescriptions(
    client: httpx.AsyncClient, db: Runtime, session: AsyncSession
) -> None:
    user = await _invited(session, Role.PATIENT)
    link = await _invite(db, user.id)
    response = await _submit(client, link.token, NEW_PASSWORD)
    assert response.headers["location"] == "/prescriptions"


async def test_the_password_rule_is_the_password_change_pages(
    client: httpx.AsyncClient, db: Runtime, session: AsyncSession
) -> None:
    user = await _invited(session)
    link = await _invite(db, user.id)
    short = await _submit(client, link.token, "too short")
    assert short.status_code == 422
    assert "not accepted: use at least 12 characters" in short.text
    spaces = await _submit(client, link.token, " " * 14)
    assert spaces.status_code == 422 and "use more than spaces" in spaces.text
    mismatch = await _submit(client, link.token, NEW_PASSWORD, NEW_PASSWORD + "!")
    assert mismatch.status_code == 422 and "not the same" in mismatch.text
    # Nothing was spent: the right password still works.
    assert (await _submit(client, link.token, NEW_PASSWORD)).status_code == 303


async def test_a_reset_link_ends_the_other_sessions(
    client: httpx.AsyncClient, db: Runtime, session: AsyncSession
) -> None:
    user = await factories.make_user(session, Role.ADMIN)
    await session.commit()
    async with httpx.AsyncClient(
        transport=client._transport, base_url="http://rxroute.test"
    ) as elsewhere:
        await sign_in(elsewhere, user.email)
        link = await _invite(db, user.id, InvitationPurpose.RESET)
        page = await client.get(f"/welcome/{link.token}", headers=HTML)
        assert "Choose a new password" in page.text
        response = await _submit(client, link.token, NEW_PASSWORD)
        assert response.headers["location"] == "/admin"
        ended = await elsewhere.get("/api/v1/auth/me")
        assert ended.status_code == 401
    async with db.sessionmaker() as s:
        live = await s.scalar(
            select(func.count())
            .select_from(AuthSession)
            .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        )
    assert live == 1


async def test_the_browsers_earlier_session_ends(
    client: httpx.AsyncClient, db: Runtime, session: AsyncSession
) -> None:
    """Someone signed in (say an admin trying the link) leaves this browser as the invitee."""
    admin = await factories.make_user(session, Role.ADMIN)
    user = await _invited(session)
    await sign_in(client, admin.email)
    link = await _invite(db, user.id)
    await _submit(client, link.token, NEW_PASSWORD)
    assert (await client.get("/api/v1/auth/me")).json()["email"] == user.email
    async with db.sessionmaker() as s:
        admin_live = await s.scalar(
            select(func.count())
            .select_from(AuthSession)
            .where(AuthSession.user_id == admin.id, AuthSession.revoked_at.is_(None))
        )
    assert admin_live == 0


@pytest.mark.parametrize("how", ["expired", "replaced"])
async def test_dead_links_are_410_and_say_to_ask_again(
    client: httpx.AsyncClient, db: Runtime, session: AsyncSession, how: str
) -> None:
    user = await _invited(session)
    link = await _invite(db, user.id)
    page = await client.get(f"/welcome/{link.token}", headers=HTML)
    token = form_token(page.text)
    if how == "expired":
        async with db.sessionmaker() as s, s.begin():
            await s.execute(
                update(Invitation)
                .where(Invitation.id == link.invitation_id)
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
    else:
        await _invite(db, user.id)
    for response in (
        await client.get(f"/welcome/{link.token}", headers=HTML),
        await client.post(
            f"/welcome/{link.token}",
            data={"csrf_token": token, "password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
            headers=HTML,
        ),
    ):
        assert response.status_code == 410
        assert "Ask for a new link" in response.text
        assert user.email not in response.text
        wanted = "expired" if how == "expired" else "replaced by a newer one"
        assert wanted in response.text
    assert not client.cookies.get("rxroute_session")


async def test_an_unknown_link_is_404(client: httpx.AsyncClient, db: Runtime) -> None:
    response = await client.get("/welcome/not-a-real-token", headers=HTML)
    assert response.status_code == 404
    assert "not valid" in response.text and "Ask for a new link" in response.text


async def test_the_form_needs_its_own_cookie(
    client: httpx.AsyncClient, db: Runtime, session: AsyncSession
) -> None:
    """A token copied from someone else's page does not work without that browser's cookie:
    another site cannot post the form for a browser."""
    user = await _invited(session)
    link = await _invite(db, user.id)
    page = await client.get(f"/welcome/{link.token}", headers=HTML)
    stolen = form_token(page.text)
    client.cookies.clear()
    data = {"csrf_token": stolen, "password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    response = await client.post(f"/welcome/{link.token}", data=data, headers=HTML)
    assert response.status_code == 403
    async with db.sessionmaker() as s:
        row = await s.get(Invitation, link.invitation_id)
        assert row is not None and row.used_at is None
