"""Server-side sessions: logout, password change, deactivation and an admin's "sign out
everywhere" end cookies and API tokens at once; an ended session says so on a live page and
on a form post."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.dependencies import SESSION_COOKIE
from rxroute.models import AuthSession, Prescription, Role, User
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime
from tests.auth.helpers import bearer, form_token, post_login
from tests.factories import (
    PASSWORD,
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
)
from tests.staff_pages import csrf_for

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
NEW_PASSWORD = "a much longer new passphrase"


@dataclass
class World:
    patient: User
    admin: User
    prescription: Prescription
    pharmacy_id: str


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await make_patient(session, region="A")
    user = await make_user(session, Role.PATIENT, patient=patient)
    admin = await make_user(session, Role.ADMIN)
    prescriber = await make_prescriber(session, db.secret_box)
    prescription = await make_prescription(session, patient, prescriber, region="A")
    pharmacy = await make_pharmacy(session, "A")
    await session.commit()
    return World(user, admin, prescription, str(pharmacy.id))


def _browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Another browser on the same app (its own cookies)."""
    return httpx.AsyncClient(transport=client._transport, base_url="http://rxroute.test")


async def _signed_in(client: httpx.AsyncClient, user: User, password: str = PASSWORD) -> str:
    response = await post_login(client, user.email, password)
    assert response.status_code == 303, response.text
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    return cookie


async def _me(
    client: httpx.AsyncClient, *, token: str | None = None, cookie: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cookies = {SESSION_COOKIE: cookie} if cookie else {}
    async with _browser(client) as fresh:
        fresh.cookies.update(cookies)
        return await fresh.get("/api/v1/auth/me", headers=headers)


async def _api_token(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_logout_ends_the_cookie_session(client: httpx.AsyncClient, world: World) -> None:
    cookie = await _signed_in(client, world.patient)
    assert (await _me(client, cookie=cookie)).status_code == 200
    out = await client.post("/logout")
    assert out.status_code == 303
    assert not client.cookies.get(SESSION_COOKIE)

    # A copy of the old cookie no longer works: not on the API, not on a page.
    answer = await _me(client, cookie=cookie)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "session ended: signed out; sign in again"}
    async with _browser(client) as copy:
        copy.cookies.set(SESSION_COOKIE, cookie)
        page = await copy.get(f"/prescriptions/{world.prescription.id}", headers=HTML)
    assert page.status_code == 303
    assert page.headers["location"] == (
        f"/login?next=/prescriptions/{world.prescription.id}&notice=ended"
    )


async def test_api_logout_ends_the_token(client: httpx.AsyncClient, world: World) -> None:
    token = await _api_token(client, world.admin.email)
    other = await _api_token(client, world.admin.email)
    out = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert out.status_code == 204
    assert (await _me(client, token=token)).status_code == 401
    assert (await _me(client, token=other)).status_code == 200  # only that one


async def test_signing_in_again_ends_the_browsers_previous_session(
    client: httpx.AsyncClient, world: World
) -> None:
    first = await _signed_in(client, world.patient)
    second = await _signed_in(client, world.admin)
    assert (await _me(client, cookie=first)).status_code == 401
    assert (await _me(client, cookie=second)).json()["role"] == "admin"


async def test_password_change_on_the_page_ends_every_other_session(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    elsewhere = _browser(client)
    async with elsewhere:
        other_cookie = await _signed_in(elsewhere, world.patient)
    api = await _api_token(client, world.patient.email)
    old_cookie = await _signed_in(client, world.patient)

    form = await client.get("/account/password", headers=HTML)
    assert form.status_code == 200
    token = form_token(form.text)
    mismatch = await client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD + "x",
        },
    )
    assert mismatch.status_code == 422
    wrong = await client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": "not my password",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 422
    assert "The current password is wrong." in wrong.text
    changed = await client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert changed.status_code == 200, changed.text
    assert "Your password was changed" in changed.text

    for cookie in (other_cookie, old_cookie):
        ended = await _me(client, cookie=cookie)
        assert ended.status_code == 401
        assert ended.json()["detail"] == "session ended: the password was changed; sign in again"
    assert (await _me(client, token=api)).status_code == 401
    # This browser carries on with a fresh session, and the new password works.
    new_cookie = client.cookies.get(SESSION_COOKIE)
    assert new_cookie and new_cookie != old_cookie
    assert (await _me(client, cookie=new_cookie)).status_code == 200
    assert (await client.get("/prescriptions", headers=HTML)).status_code == 200
    async with _browser(client) as later:
        assert (await post_login(later, world.patient.email, PASSWORD)).status_code == 401
        assert (await post_login(later, world.patient.email, NEW_PASSWORD)).status_code == 303


async def test_password_change_by_api_ends_every_session(
    client: httpx.AsyncClient, world: World
) -> None:
    token = await _api_token(client, world.admin.email)
    other = await _api_token(client, world.admin.email)
    headers = {"Authorization": f"Bearer {token}"}
    weak = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert weak.status_code == 422
    assert "new_password" in weak.json()["detail"]
    response = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    fresh = response.json()["access_token"]
    assert (await _me(client, token=token)).status_code == 401
    assert (await _me(client, token=other)).status_code == 401
    assert (await _me(client, token=fresh)).status_code == 200


async def test_guessing_the_current_password_is_throttled(
    client: httpx.AsyncClient, world: World
) -> None:
    headers = await bearer_for(client, world.admin)
    codes = []
    for n in range(4):
        response = await client.post(
            "/api/v1/auth/password",
            json={"current_password": f"guess {n}", "new_password": NEW_PASSWORD},
            headers=headers,
        )
        codes.append(response.status_code)
    assert codes == [422, 422, 422, 429]


async def bearer_for(client: httpx.AsyncClient, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {await _api_token(client, user.email)}"}


async def test_admin_sign_out_everywhere_ends_every_session_of_that_user(
    client: httpx.AsyncClient, session: AsyncSession, world: World, db: Runtime
) -> None:
    browsers = [_browser(client), _browser(client)]
    cookies = [await _signed_in(browser, world.patient) for browser in browsers]
    token = await _api_token(client, world.patient.email)
    bystander = await bearer(db, world.admin.id)

    await _signed_in(client, world.admin)
    listing = await client.get("/admin/users", headers=HTML)
    assert listing.status_code == 200
    assert world.patient.email in listing.text
    assert "3 sessions" in listing.text
    response = await client.post(
        f"/admin/users/{world.patient.id}/sign-out",
        data={"csrf_token": await csrf_for(client, "/admin/users")},
    )
    assert response.status_code == 303
    done = await client.get(response.headers["location"], headers=HTML)
    assert f"{world.patient.email} signed out everywhere" in done.text

    detail = "session ended: an administrator signed this account out everywhere; sign in again"
    for cookie in cookies:
        ended = await _me(client, cookie=cookie)
        assert (ended.status_code, ended.json()["detail"]) == (401, detail)
    assert (await _me(client, token=token)).status_code == 401
    # Nobody else is affected, and the user may sign in again.
    assert (await client.get("/api/v1/auth/me", headers=bystander)).status_code == 200
    assert (await client.get("/admin/users", headers=HTML)).status_code == 200
    assert await _api_token(client, world.patient.email)
    for browser in browsers:
        await browser.aclose()


async def test_sign_out_everywhere_needs_an_admin_and_the_csrf_token(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await _signed_in(client, world.admin)
    forged = await client.post(f"/admin/users/{world.patient.id}/sign-out", data={})
    assert forged.status_code == 403
    await _signed_in(client, world.patient)
    token = await csrf_for(client, "/prescriptions")
    response = await client.post(
        f"/admin/users/{world.admin.id}/sign-out", data={"csrf_token": token}, headers=HTML
    )
    assert response.status_code == 403
    live = await session.scalar(
        select(func.count()).select_from(AuthSession).where(AuthSession.revoked_at.is_(None))
    )
    assert live == 1  # only the patient's current session; the admin's was ended by sign-in


async def test_deactivation_ends_every_session_and_reactivation_does_not_revive_them(
    client: httpx.AsyncClient, world: World
) -> None:
    async with _browser(client) as patient_browser:
        cookie = await _signed_in(patient_browser, world.patient)
    token = await _api_token(client, world.patient.email)

    await _signed_in(client, world.admin)
    csrf = await csrf_for(client, "/admin/users")
    off = await client.post(
        f"/admin/users/{world.patient.id}/active", data={"csrf_token": csrf, "active": "0"}
    )
    assert off.status_code == 303
    ended = await _me(client, cookie=cookie)
    assert ended.json()["detail"] == "session ended: the account was deactivated; sign in again"
    assert (await _me(client, token=token)).status_code == 401
    refused = await client.post(
        "/api/v1/auth/token", json={"email": world.patient.email, "password": PASSWORD}
    )
    assert refused.status_code == 401

    on = await client.post(
        f"/admin/users/{world.patient.id}/active", data={"csrf_token": csrf, "active": "1"}
    )
    assert on.status_code == 303
    assert (await _me(client, cookie=cookie)).status_code == 401
    assert (await _me(client, token=token)).status_code == 401
    assert await _api_token(client, world.patient.email)


async def test_an_admin_cannot_deactivate_themselves(
    client: httpx.AsyncClient, world: World
) -> None:
    await _signed_in(client, world.admin)
    csrf = await csrf_for(client, "/admin/users")
    response = await client.post(
        f"/admin/users/{world.admin.id}/active",
        data={"csrf_token": csrf, "active": "0"},
        headers=HTML,
    )
    assert response.status_code == 409
    assert (await client.get("/admin/users", headers=HTML)).status_code == 200


async def test_live_status_poll_after_revocation_is_a_clear_401(
    client: httpx.AsyncClient, world: World
) -> None:
    await _signed_in(client, world.patient)
    url = f"/api/v1/prescriptions/{world.prescription.id}"
    assert (await client.get(url, headers=JSON)).status_code == 200

    async with _browser(client) as admin:
        await _signed_in(admin, world.admin)
        await admin.post(
            f"/admin/users/{world.patient.id}/sign-out",
            data={"csrf_token": await csrf_for(admin, "/admin/users")},
        )
    poll = await client.get(url, headers=JSON)
    assert poll.status_code == 401
    assert poll.headers["content-type"].startswith("application/json")
    assert poll.json() == {
        "detail": "session ended: an administrator signed this account out everywhere; "
        "sign in again"
    }


async def test_a_form_posted_on_an_ended_session_says_it_was_not_saved(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await _signed_in(client, world.patient)
    page_url = f"/prescriptions/{world.prescription.id}"
    csrf = await csrf_for(client, page_url)
    async with _browser(client) as admin:
        await _signed_in(admin, world.admin)
        await admin.post(
            f"/admin/users/{world.patient.id}/sign-out",
            data={"csrf_token": await csrf_for(admin, "/admin/users")},
        )

    sent = await client.post(
        f"{page_url}/send",
        data={"csrf_token": csrf, "region": "A", "pharmacy_id": world.pharmacy_id},
        headers=HTML,
    )
    assert sent.status_code == 303
    # Back to the page the form was on (the post itself cannot be replayed), saying so.
    assert sent.headers["location"] == f"/login?next={page_url}&notice=unsaved"
    login = await client.get(sent.headers["location"], headers=HTML)
    assert "what you just submitted was not saved" in login.text
    assert f'name="next" value="{page_url}"' in login.text
    await session.refresh(world.prescription)
    assert world.prescription.status == Status.DRAFT.value

    # Signing in takes the patient back to the page, where the form is ready again.
    back = await client.post(
        "/login",
        data={
            "email": world.patient.email,
            "password": PASSWORD,
            "next": page_url,
            "csrf_token": form_token(login.text),
        },
    )
    assert back.headers["location"] == page_url
    assert (await client.get(page_url, headers=HTML)).status_code == 200


async def test_a_form_posted_after_the_cookie_expired_says_it_was_not_saved(
    client: httpx.AsyncClient, world: World
) -> None:
    page_url = f"/prescriptions/{world.prescription.id}"
    sent = await client.post(f"{page_url}/send", data={"region": "A"}, headers=HTML)
    assert sent.status_code == 303
    assert sent.headers["location"] == f"/login?next={page_url}&notice=unsaved"
