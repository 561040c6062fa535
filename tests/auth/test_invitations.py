"""Set-password links: only a hash stored, one-time, expiring, a newer link cancels older
ones, and the email is a job deferred in the same transaction, read back from the catcher."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth import invitations
from rxroute.auth.accounts import set_user_active
from rxroute.auth.invitations import LinkState, LinkUnusable, PasswordRefused
from rxroute.auth.passwords import verify_password
from rxroute.auth.signin import sign_in
from rxroute.channels.email.errors import EmailRetryable
from rxroute.mailcatcher import MailCatcher
from rxroute.models import AuthSession, Invitation, InvitationPurpose, Role, SessionKind, User
from rxroute.runtime import Runtime
from tests import factories
from tests.invitation_mail import catcher as catcher  # a fixture
from tests.invitation_mail import invitation_jobs, run_invitation_jobs, token_in
from tests.invitation_mail import mail as mail  # a fixture

NEW_PASSWORD = "a brand new passphrase"


async def _issue(
    runtime: Runtime, user_id: object, purpose: InvitationPurpose = InvitationPurpose.INVITE
) -> invitations.IssuedLink:
    async with runtime.sessionmaker() as s, s.begin():
        user = await s.get(User, user_id)
        assert user is not None
        return await invitations.issue_link(s, runtime, user, purpose, created_by=None)


async def _use(runtime: Runtime, token: str, password: str = NEW_PASSWORD) -> object:
    async with runtime.sessionmaker() as s, s.begin():
        return await invitations.set_password_with_link(s, runtime, token, password)


async def _state(runtime: Runtime, token: str) -> LinkState:
    async with runtime.sessionmaker() as s:
        return invitations.state_of(await invitations.find_link(s, token))


@pytest.fixture
async def user(session: AsyncSession) -> User:
    made = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    return made


async def test_only_the_tokens_sha256_is_stored_and_the_job_carries_it_sealed(
    db: Runtime, user: User
) -> None:
    link = await _issue(db, user.id)
    assert len(link.token) >= 43  # 32 random bytes
    async with db.sessionmaker() as s:
        row = await s.get(Invitation, link.invitation_id)
        assert row is not None
        assert row.token_hash == hashlib.sha256(link.token.encode()).hexdigest()
        dumped = (await s.execute(text("SELECT row_to_json(i)::text FROM invitations i"))).scalar()
    assert link.token not in str(dumped)
    [job] = await invitation_jobs(db)
    assert job["invitation_id"] == str(link.invitation_id)
    assert link.token not in str(job)
    assert db.secret_box.decrypt(job["sealed_token"]) == link.token
    assert row.expires_at - datetime.now(UTC) == pytest.approx(
        timedelta(hours=db.settings.invitation_hours), abs=timedelta(minutes=1)
    )


async def test_a_rolled_back_issue_leaves_neither_link_nor_email(db: Runtime, user: User) -> None:
    async with db.sessionmaker() as s, s.begin():
        target = await s.get(User, user.id)
        assert target is not None
        await invitations.issue_link(s, db, target, InvitationPurpose.INVITE, created_by=None)
        await s.rollback()
    assert await invitation_jobs(db) == []
    async with db.sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(Invitation)) == 0


async def test_the_link_sets_the_password_activates_and_ends_other_sessions(
    db: Runtime, session: AsyncSession
) -> None:
    invited = await factories.make_user(session, Role.SUPPORT)
    invited.active = False
    await session.commit()
    async with db.sessionmaker() as s, s.begin():
        await s.execute(update(User).where(User.id == invited.id).values(active=True))
        old = await sign_in(
            s,
            db.settings,
            email=invited.email,
            password=factories.PASSWORD,
            client="test",
            kind=SessionKind.API,
        )
    link = await _issue(db, invited.id)
    signed_in = await _use(db, link.token)
    async with db.sessionmaker() as s:
        fresh = await s.get(User, invited.id)
        assert fresh is not None and fresh.active
        assert verify_password(fresh.password_hash, NEW_PASSWORD)
        assert not verify_password(fresh.password_hash, factories.PASSWORD)
        live = list(
            await s.scalars(
                select(AuthSession.user_id).where(
                    AuthSession.user_id == invited.id, AuthSession.revoked_at.is_(None)
                )
            )
        )
    assert len(live) == 1  # only the session the link opened
    assert signed_in.role == Role.SUPPORT.value
    assert signed_in.token != old.token
    assert await _state(db, link.token) is LinkState.USED


async def test_a_link_works_once(db: Runtime, user: User) -> None:
    link = await _issue(db, user.id)
    await _use(db, link.token)
    with pytest.raises(LinkUnusable) as refused:
        await _use(db, link.token, "another passphrase here")
    assert refused.value.state is LinkState.USED


async def test_two_submissions_at_once_set_the_password_once(db: Runtime, user: User) -> None:
    link = await _issue(db, user.id)
    results = await asyncio.gather(
        _use(db, link.token, "first passphrase wins"),
        _use(db, link.token, "second passphrase wins"),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, LinkUnusable)]
    assert len(refused) == 1 and refused[0].state is LinkState.USED
    async with db.sessionmaker() as s:
        fresh = await s.get(User, user.id)
        assert fresh is not None
        winners = [
            p
            for p in ("first passphrase wins", "second passphrase wins")
            if verify_password(fresh.password_hash, p)
        ]
    assert len(winners) == 1


async def test_an_expired_link_is_refused(db: Runtime, user: User) -> None:
    link = await _issue(db, user.id)
    async with db.sessionmaker() as s, s.begin():
        await s.execute(
            update(Invitation)
            .where(Invitation.id == link.invitation_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(LinkUnusable) as refused:
        await _use(db, link.token)
    assert refused.value.state is LinkState.EXPIRED


async def test_unknown_and_oversized_tokens_are_unknown(db: Runtime) -> None:
    for token in ("", "nope", "x" * 5000):
        with pytest.raises(LinkUnusable) as refused:
            await _use(db, token)
        assert refused.value.state is LinkState.UNKNOWN


async def test_a_newer_link_cancels_the_older(db: Runtime, user: User) -> None:
    first = await _issue(db, user.id)
    second = await _issue(db, user.id, InvitationPurpose.RESET)
    assert await _state(db, first.token) is LinkState.REVOKED
    with pytest.raises(LinkUnusable) as refused:
        await _use(db, first.token)
    assert refused.value.state is LinkState.REVOKED
    await _use(db, second.token)


async def test_links_issued_at_once_leave_exactly_one_live(db: Runtime, user: User) -> None:
    links = await asyncio.gather(*(_issue(db, user.id) for _ in range(5)))
    states = [await _state(db, link.token) for link in links]
    assert states.count(LinkState.LIVE) == 1
    assert states.count(LinkState.REVOKED) == 4


async def test_a_refused_password_leaves_the_link_usable(db: Runtime, user: User) -> None:
    link = await _issue(db, user.id)
    with pytest.raises(PasswordRefused, match="at least 12 characters"):
        await _use(db, link.token, "short")
    assert await _state(db, link.token) is LinkState.LIVE


async def test_deactivating_the_account_cancels_its_links(db: Runtime, user: User) -> None:
    link = await _issue(db, user.id)
    async with db.sessionmaker() as s, s.begin():
        target = await s.get(User, user.id)
        assert target is not None
        await set_user_active(s, target, False)
    assert await _state(db, link.token) is LinkState.REVOKED


# --- the email ----------------------------------------------------------------------------


async def test_the_email_carries_a_working_link_and_no_other_personal_detail(
    mail: Runtime, catcher: MailCatcher, session: AsyncSession
) -> None:
    patient = await factories.make_patient(session, first_name="Zebedee", last_name="Quixote")
    invited = await factories.make_user(session, Role.PATIENT, patient=patient)
    await session.commit()
    link = await _issue(mail, invited.id)
    assert await run_invitation_jobs(mail) == ["sent"]
    [message] = catcher.messages()
    assert message.envelope_to == (invited.email,)
    assert message.subject == "You are invited to rxroute: set your password"
    assert token_in(message) == link.token
    url = f"{mail.settings.public_url}/welcome/{link.token}"
    assert url.startswith("http") and url in (message.html_body or "")
    assert url in (message.text_body or "")
    assert "ask your clinic" in (message.text_body or "")
    for body in (message.text_body or "", message.html_body or ""):
        assert "Zebedee" not in body and "Quixote" not in body
        assert patient.postcode not in body and "1985" not in body


async def test_a_reset_email_says_so(mail: Runtime, catcher: MailCatcher, user: User) -> None:
    await _issue(mail, user.id, InvitationPurpose.RESET)
    assert await run_invitation_jobs(mail) == ["sent"]
    [message] = catcher.messages()
    assert message.subject == "Set a new password for rxroute"
    assert "Your old password no longer works" in (message.text_body or "")
    assert "(support)" in (message.text_body or "")


async def test_an_older_links_job_sends_nothing(
    mail: Runtime, catcher: MailCatcher, user: User
) -> None:
    await _issue(mail, user.id)
    newer = await _issue(mail, user.id)
    assert await run_invitation_jobs(mail) == ["skipped", "sent"]
    [message] = catcher.messages()
    assert token_in(message) == newer.token


async def test_a_temporary_smtp_refusal_is_retried_by_the_queue(
    mail: Runtime, catcher: MailCatcher, user: User
) -> None:
    await _issue(mail, user.id)
    catcher.faults.arm("refuse_temporary", 1)
    with pytest.raises(EmailRetryable):
        await run_invitation_jobs(mail)
    assert catcher.messages() == []
    assert await run_invitation_jobs(mail) == ["sent"]
    catcher.faults.arm("refuse_permanent", 1)
    await _issue(mail, user.id)
    assert (await run_invitation_jobs(mail))[-1] == "rejected"
