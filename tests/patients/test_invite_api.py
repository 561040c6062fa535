"""``POST /api/v1/patients/{external_id}/invite``: an API key with ``patients:write`` emails
the patient a set-password link, creating their patient account the first time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.scopes import Scope
from rxroute.mailcatcher import MailCatcher
from rxroute.models import Invitation, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.apiclients.helpers import bearer, make_api_key
from tests.auth.helpers import bearer as user_bearer
from tests.auth.helpers import form_token
from tests.invitation_mail import catcher as catcher  # a fixture
from tests.invitation_mail import invitation_jobs, run_invitation_jobs, token_in
from tests.invitation_mail import mail as mail  # a fixture

URL = "/api/v1/patients/{}/invite"


async def _patient_user(session: AsyncSession, patient_id: object) -> list[User]:
    return list(
        await session.scalars(
            select(User)
            .where(User.patient_id == patient_id)
            .execution_options(populate_existing=True)
        )
    )


async def test_invites_a_patient_who_then_sets_a_password_and_signs_in(
    client: httpx.AsyncClient, session: AsyncSession, mail: Runtime, catcher: MailCatcher
) -> None:
    patient = await factories.make_patient(
        session, external_id="plat-p-1", first_name="Ottoline", email="ottoline@example.com"
    )
    patient_id = patient.id
    key = await make_api_key(session, Scope.PATIENTS_WRITE)
    response = await client.post(URL.format("plat-p-1"), headers=bearer(key))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["invited"] is True
    expires = datetime.fromisoformat(body["expires_at"])
    wanted = timedelta(hours=mail.settings.invitation_hours)
    assert abs(expires - datetime.now(UTC) - wanted) < timedelta(minutes=1)
    [user] = await _patient_user(session, patient_id)
    assert (user.role, user.active, user.email) == (
        Role.PATIENT.value,
        False,
        "ottoline@example.com",
    )

    assert await run_invitation_jobs(mail) == ["sent"]
    [message] = catcher.messages()
    assert message.envelope_to == ("ottoline@example.com",)
    assert "Ottoline" not in (message.text_body or "")
    token = token_in(message)
    async with httpx.AsyncClient(
        transport=client._transport, base_url="http://rxroute.test"
    ) as browser:
        page = await browser.get(f"/welcome/{token}")
        done = await browser.post(
            f"/welcome/{token}",
            data={
                "csrf_token": form_token(page.text),
                "password": "the patient's passphrase",
                "confirm_password": "the patient's passphrase",
            },
        )
        assert (done.status_code, done.headers["location"]) == (303, "/prescriptions")
        me = await browser.get("/api/v1/auth/me")
        assert me.json()["email"] == "ottoline@example.com"


async def test_a_second_invite_reuses_the_account_and_replaces_the_link(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    patient = await factories.make_patient(session, external_id="plat-p-2")
    patient_id = patient.id
    key = await make_api_key(session, Scope.PATIENTS_WRITE)
    for _ in range(2):
        response = await client.post(URL.format("plat-p-2"), headers=bearer(key))
        assert response.status_code == 202
    [user] = await _patient_user(session, patient_id)
    links = list(await session.scalars(select(Invitation).where(Invitation.user_id == user.id)))
    assert sorted(link.revoked_at is None for link in links) == [False, True]
    assert len(await invitation_jobs(db)) == 2


async def test_an_active_patient_can_be_sent_a_new_link(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    patient = await factories.make_patient(session, external_id="plat-p-3")
    await factories.make_user(session, Role.PATIENT, patient=patient)
    key = await make_api_key(session, Scope.PATIENTS_WRITE)
    response = await client.post(URL.format("plat-p-3"), headers=bearer(key))
    assert response.status_code == 202
    assert len(await _patient_user(session, patient.id)) == 1


async def test_needs_a_key_with_patients_write(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    await factories.make_patient(session, external_id="plat-p-4")
    reader = await make_api_key(session, Scope.PRESCRIPTIONS_READ)
    staff = await factories.make_user(session, Role.ADMIN)
    await session.commit()
    nothing = await client.post(URL.format("plat-p-4"))
    assert nothing.status_code == 401
    wrong = await client.post(URL.format("plat-p-4"), headers=bearer(reader))
    assert wrong.status_code == 403
    assert wrong.json()["detail"] == "this API key lacks the patients:write scope"
    person = await client.post(URL.format("plat-p-4"), headers=await user_bearer(db, staff.id))
    assert person.status_code == 401
    assert await invitation_jobs(db) == []


async def test_unknown_patient_is_404_naming_the_field(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    key = await make_api_key(session, Scope.PATIENTS_WRITE)
    response = await client.post(URL.format("nobody-here"), headers=bearer(key))
    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] == "external_id"
    too_long = await client.post(URL.format("x" * 201), headers=bearer(key))
    assert too_long.status_code == 422


async def test_refusals_name_no_personal_details(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    await factories.make_patient(session, external_id="plat-p-5", email="")
    await factories.make_patient(session, external_id="plat-p-6", email="shared@example.com")
    await factories.make_user(session, Role.SUPPORT, email="shared@example.com")
    gone = await factories.make_patient(session, external_id="plat-p-7")
    gone_user = await factories.make_user(session, Role.PATIENT, patient=gone)
    gone_user.active = False
    key = await make_api_key(session, Scope.PATIENTS_WRITE)

    missing = await client.post(URL.format("plat-p-5"), headers=bearer(key))
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "email"
    taken = await client.post(URL.format("plat-p-6"), headers=bearer(key))
    assert taken.status_code == 409
    assert "shared@example.com" not in taken.text
    deactivated = await client.post(URL.format("plat-p-7"), headers=bearer(key))
    assert deactivated.status_code == 409 and "deactivated" in deactivated.json()["detail"]
    assert await invitation_jobs(db) == []
