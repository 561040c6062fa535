"""axe-core over every page rxroute, its sandbox and its mail catcher serve: 0 violations.

The list of rxroute's pages is checked against the route table, so a page added later
fails here until it is given a URL to visit (and so gets checked). Pages are visited in the
states people meet them in: a draft, a sent prescription (with its pharmacy link, change and
cancel steps), a failed one, and each staff console, signed in with the role that uses it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Page
from sqlalchemy import select

from rxroute.apiclients.scopes import Scope
from rxroute.apiclients.service import create_client
from rxroute.auth.invitations import issue_link
from rxroute.models import (
    EventEndpoint,
    InvitationPurpose,
    Patient,
    Pharmacy,
    Prescriber,
    Role,
    User,
)
from rxroute.notifications.links import make_unsubscribe_token
from rxroute.prescriptions.lifecycle import Status
from rxroute.seed import data
from tests import factories
from tests.browser import axe
from tests.browser.conftest import DESKTOP, Stack
from tests.routes import route_table

pytestmark = pytest.mark.skipif(not axe.AXE_SCRIPT.exists(), reason=axe.MISSING)

#: GET routes that answer with something other than a page for people.
NOT_PAGES = {
    "/": "redirects to the signed-in user's home",
    "/openapi.json": "JSON",
    "/healthz": "probe",
    "/readyz": "probe",
    "/metrics": "Prometheus text",
    "/admin/pharmacies/export.csv": "CSV download",
    "/admin/pharmacies/template.csv": "CSV download",
}

#: Who opens each page: a role's demo login, or nobody (public pages).
PATIENT, SUPPORT, ADMIN, PRESCRIBER, NOBODY = (
    data.DEMO_PATIENT_EMAIL,
    data.DEMO_SUPPORT_EMAIL,
    data.DEMO_ADMIN_EMAIL,
    data.DEMO_PRESCRIBER_EMAIL,
    "",
)


@dataclass
class World:
    """The ids and links the pages are visited with."""

    draft_a: uuid.UUID
    draft_b: uuid.UUID
    sent: uuid.UUID
    failed: uuid.UUID
    written: uuid.UUID
    patient_id: uuid.UUID
    pharmacy_id: uuid.UUID
    pharmacy_a_id: uuid.UUID
    prescriber_id: uuid.UUID
    client_id: uuid.UUID
    endpoint_id: uuid.UUID
    welcome_token: str
    unsubscribe_token: str
    confirm_path: str


#: Every rxroute page (path template as routed), who opens it, and the URLs to visit.
PAGES: dict[str, tuple[str, Callable[[World], list[str]]]] = {
    "/login": (NOBODY, lambda w: ["/login"]),
    "/docs": (NOBODY, lambda w: ["/docs"]),
    "/redoc": (NOBODY, lambda w: ["/redoc"]),
    "/welcome/{token}": (NOBODY, lambda w: [f"/welcome/{w.welcome_token}", "/welcome/unknown"]),
    "/pharmacy/confirm/{token}": (NOBODY, lambda w: [w.confirm_path, "/pharmacy/confirm/bad"]),
    "/notifications/unsubscribe/{token}": (
        NOBODY,
        lambda w: [f"/notifications/unsubscribe/{w.unsubscribe_token}"],
    ),
    "/account/password": (PATIENT, lambda w: ["/account/password"]),
    "/prescriptions": (PATIENT, lambda w: ["/prescriptions"]),
    "/prescriptions/{prescription_id}": (
        PATIENT,
        lambda w: [f"/prescriptions/{p}" for p in (w.draft_a, w.draft_b, w.sent, w.failed)],
    ),
    "/prescriptions/{prescription_id}/change": (
        PATIENT,
        lambda w: [f"/prescriptions/{w.sent}/change?pharmacy_id={w.pharmacy_a_id}"],
    ),
    "/prescriptions/{prescription_id}/send/confirm": (
        PATIENT,
        lambda w: [
            f"/prescriptions/{w.draft_b}/send/confirm?region=B&pharmacy_id={w.pharmacy_id}",
            f"/prescriptions/{w.draft_a}/send/confirm?region=A&pharmacy_id={w.pharmacy_a_id}",
        ],
    ),
    "/prescriptions/{prescription_id}/cancel": (
        PATIENT,
        lambda w: [f"/prescriptions/{w.sent}/cancel"],
    ),
    "/support": (SUPPORT, lambda w: ["/support"]),
    "/support/prescriptions/{prescription_id}": (
        SUPPORT,
        lambda w: [f"/support/prescriptions/{p}" for p in (w.sent, w.failed)],
    ),
    "/support/prescriptions/{prescription_id}/email": (
        SUPPORT,
        lambda w: [f"/support/prescriptions/{w.sent}/email"],
    ),
    "/support/webhooks": (SUPPORT, lambda w: ["/support/webhooks"]),
    "/support/prescriptions/{prescription_id}/void": (
        SUPPORT,
        lambda w: [f"/support/prescriptions/{w.sent}/void"],
    ),
    "/support/prescriptions/{prescription_id}/retry": (
        SUPPORT,
        lambda w: [f"/support/prescriptions/{w.failed}/retry"],
    ),
    "/support/prescriptions/{prescription_id}/reroute": (
        SUPPORT,
        lambda w: [f"/support/prescriptions/{w.sent}/reroute"],
    ),
    "/support/events": (SUPPORT, lambda w: ["/support/events"]),
    "/support/events/endpoints/{endpoint_id}": (
        SUPPORT,
        lambda w: [f"/support/events/endpoints/{w.endpoint_id}"],
    ),
    "/admin": (ADMIN, lambda w: ["/admin"]),
    "/admin/pharmacies": (ADMIN, lambda w: ["/admin/pharmacies"]),
    "/admin/pharmacies/new": (ADMIN, lambda w: ["/admin/pharmacies/new"]),
    "/admin/pharmacies/import": (ADMIN, lambda w: ["/admin/pharmacies/import"]),
    "/admin/pharmacies/{pharmacy_id}": (ADMIN, lambda w: [f"/admin/pharmacies/{w.pharmacy_id}"]),
    "/admin/pharmacies/{pharmacy_id}/deactivate": (
        ADMIN,
        lambda w: [f"/admin/pharmacies/{w.pharmacy_id}/deactivate"],
    ),
    "/admin/prescribers": (ADMIN, lambda w: ["/admin/prescribers"]),
    "/admin/prescribers/new": (ADMIN, lambda w: ["/admin/prescribers/new"]),
    "/admin/prescribers/{prescriber_id}": (
        ADMIN,
        lambda w: [f"/admin/prescribers/{w.prescriber_id}"],
    ),
    "/admin/regions": (ADMIN, lambda w: ["/admin/regions"]),
    "/admin/users": (ADMIN, lambda w: ["/admin/users"]),
    "/admin/audit": (ADMIN, lambda w: ["/admin/audit"]),
    "/admin/events": (ADMIN, lambda w: ["/admin/events"]),
    "/admin/events/new": (ADMIN, lambda w: ["/admin/events/new"]),
    "/admin/formulary": (ADMIN, lambda w: ["/admin/formulary"]),
    "/admin/api-clients": (ADMIN, lambda w: ["/admin/api-clients"]),
    "/admin/api-clients/new": (ADMIN, lambda w: ["/admin/api-clients/new"]),
    "/admin/api-clients/{client_id}/rotate": (
        ADMIN,
        lambda w: [f"/admin/api-clients/{w.client_id}/rotate"],
    ),
    "/admin/api-clients/{client_id}/revoke": (
        ADMIN,
        lambda w: [f"/admin/api-clients/{w.client_id}/revoke"],
    ),
    "/prescriber": (PRESCRIBER, lambda w: ["/prescriber"]),
    "/prescriber/patients/{patient_id}/write": (
        PRESCRIBER,
        lambda w: [f"/prescriber/patients/{w.patient_id}/write"],
    ),
    "/prescriber/prescriptions/{prescription_id}": (
        PRESCRIBER,
        lambda w: [f"/prescriber/prescriptions/{w.written}"],
    ),
}


def _page_routes() -> set[str]:
    from rxroute.app import create_app
    from rxroute.config import Settings

    return {
        path
        for method, path, _ in route_table(create_app(Settings()))
        if method == "GET" and not path.startswith("/api/") and path not in NOT_PAGES
    }


def test_every_page_is_listed() -> None:
    """A new page must be added to PAGES (and so checked); a removed one taken out."""
    routed = _page_routes()
    assert sorted(routed - PAGES.keys()) == [], "pages not checked for accessibility"
    assert sorted(PAGES.keys() - routed) == [], "listed pages that no longer exist"


async def _send_by_api(stack: Stack, prescription_id: uuid.UUID, region: str) -> None:
    async with stack.runtime.sessionmaker() as session:
        pharmacy_id = await session.scalar(
            select(Pharmacy.id)
            .where(Pharmacy.region == region, Pharmacy.active.is_(True))
            .order_by(Pharmacy.name)
            .limit(1)
        )
    async with httpx.AsyncClient(base_url=stack.url) as client:
        signed_in = await client.post(
            "/api/v1/auth/token",
            json={"email": data.DEMO_PATIENT_EMAIL, "password": data.DEMO_PASSWORD},
        )
        signed_in.raise_for_status()
        token = signed_in.json()["access_token"]
        sent = await client.post(
            f"/api/v1/prescriptions/{prescription_id}/send",
            json={"region": region, "pharmacy_id": str(pharmacy_id)},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert sent.status_code == 202, sent.text


async def _wait_for(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    import asyncio

    for _ in range(300):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _world(stack: Stack) -> World:
    runtime = stack.runtime
    draft_a = await stack.draft("A")
    draft_b = await stack.draft("B")
    await _send_by_api(stack, draft_a, "A")

    async def confirm_link() -> str | None:
        for message in stack.mail.store.all():
            found = re.search(
                r"https?://[^\s\"<>]+(/pharmacy/confirm/[^\s\"<>]+)", (message.text_body or "")
            )
            if found:
                return found.group(1)
        return None

    confirm_path = await _wait_for(confirm_link, "the pharmacy's email")
    sent = draft_a
    draft_a = await stack.draft("A")

    async with runtime.sessionmaker() as session, session.begin():
        patient = await session.scalar(
            select(Patient).where(Patient.email == data.DEMO_PATIENT_EMAIL)
        )
        assert patient is not None
        prescriber = await session.scalar(select(Prescriber).order_by(Prescriber.created_at))
        assert prescriber is not None
        pharmacy = await session.scalar(
            select(Pharmacy).where(Pharmacy.region == "B").order_by(Pharmacy.name).limit(1)
        )
        assert pharmacy is not None
        pharmacy_a_id = await session.scalar(
            select(Pharmacy.id)
            .where(Pharmacy.region == "A", Pharmacy.active.is_(True))
            .order_by(Pharmacy.name.desc())
            .limit(1)
        )
        assert pharmacy_a_id is not None
        failing = await factories.make_prescription(
            session, patient, prescriber, region="B", channel="erx", pharmacy_id=pharmacy.id
        )
        await factories.queue_delivery(session, failing.id)
        await factories.observe_current(
            session, failing.id, Status.FAILED, detail="login: platform answered HTTP 502"
        )
        doctor_id = await session.scalar(
            select(User.prescriber_id).where(User.email == data.DEMO_PRESCRIBER_EMAIL)
        )
        demo_doctor = await session.get(Prescriber, doctor_id)
        assert demo_doctor is not None
        written = await factories.make_prescription(session, patient, demo_doctor)
        newcomer = await factories.make_user(session, Role.SUPPORT, email="newcomer@example.com")
        link = await issue_link(
            session, runtime, newcomer, InvitationPurpose.INVITE, created_by=None
        )
        client = await create_client(session, name="axe-check", scopes=list(Scope))
        endpoint = EventEndpoint(
            id=uuid.uuid4(),
            is_default=False,
            url="http://127.0.0.1:9/events",
            secret_encrypted=runtime.secret_box.encrypt("whsec_" + "a" * 32),
            description="accessibility check",
            event_types=[],
            active=True,
        )
        session.add(endpoint)
        return World(
            draft_a=draft_a,
            draft_b=draft_b,
            sent=sent,
            failed=failing.id,
            written=written.id,
            patient_id=patient.id,
            pharmacy_id=pharmacy.id,
            pharmacy_a_id=pharmacy_a_id,
            prescriber_id=prescriber.id,
            client_id=client.client.id,
            endpoint_id=endpoint.id,
            welcome_token=link.token,
            unsubscribe_token=make_unsubscribe_token(runtime.settings, patient.id),
            confirm_path=confirm_path,
        )


async def _signed_in_page(browser: Any, stack: Stack, email: str) -> Page:
    context = await browser.new_context(viewport=DESKTOP, base_url=stack.url)
    context.set_default_timeout(15_000)
    await axe.install(context)
    page: Page = await context.new_page()
    if email:
        await page.goto("/login")
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(data.DEMO_PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(lambda url: "/login" not in url)
    return page


async def _check(page: Page, url: str, label: str) -> list[axe.Violation]:
    response = await page.goto(url)
    assert response is not None, url
    assert "text/html" in (response.headers.get("content-type") or ""), url
    assert response.status < 500, f"{url} answered {response.status}"
    return await axe.violations(page, label)


async def test_every_page_has_no_accessibility_violations(browser: Any, stack: Stack) -> None:
    world = await _world(stack)
    pages: dict[str, Page] = {}
    found: list[axe.Violation] = []
    checked = 0
    for template, (who, urls) in PAGES.items():
        if who not in pages:
            pages[who] = await _signed_in_page(browser, stack, who)
        for url in urls(world):
            found += await _check(pages[who], url, f"{template} ({url.split('?')[0]})")
            checked += 1

    outsider = pages[NOBODY]
    for url in (
        f"{stack.sandbox.url}/",
        f"{stack.sandbox.url}/prescriptions",
        f"{stack.sandbox.url}/faults",
        f"{stack.sandbox.url}/mailbox",
        f"{stack.sandbox.url}/deliveries",
        f"{stack.mail.web_url}/",
    ):
        found += await _check(outsider, url, url)
        checked += 1
    message = stack.mail.store.all()[0]
    found += await _check(
        outsider, f"{stack.mail.web_url}/messages/{message.id}", "mail catcher message"
    )
    assert checked > len(PAGES)
    assert found == [], "accessibility violations:\n" + "\n".join(str(v) for v in found)
