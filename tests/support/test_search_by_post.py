"""Support search is a POST: a patient's email never lands in a URL or an access log."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from rxroute.models import Prescription, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.staff_pages import csrf_for, sign_in

EMAIL = "search.me-patient@example.com"
URL_ATTRIBUTES = re.compile(r'\b(?:href|action|src|formaction)="([^"]*)"')


@dataclass
class Case:
    support: User
    patient_user: User
    prescription: Prescription


@pytest.fixture
async def case(session: AsyncSession, db: Runtime) -> Case:
    patient = await factories.make_patient(session, email=EMAIL)
    patient_user = await factories.make_user(session, Role.PATIENT, patient=patient)
    support = await factories.make_user(session, Role.SUPPORT)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    pharmacy = await factories.make_pharmacy(session, "B")
    prescription = await factories.make_prescription(
        session, patient, prescriber, region="B", channel="erx", pharmacy_id=pharmacy.id
    )
    await session.commit()
    return Case(support, patient_user, prescription)


async def test_the_search_form_posts_with_its_token(client: httpx.AsyncClient, case: Case) -> None:
    await sign_in(client, case.support)
    page = (await client.get("/support")).text
    form = re.search(
        r'<form method="([a-z]+)" action="([^"]+)"[^>]*role="search">(.*?)</form>', page, re.S
    )
    assert form is not None
    assert form.group(1, 2) == ("post", "/support/search")
    assert 'name="csrf_token"' in form.group(3)


async def test_a_search_by_email_keeps_it_out_of_every_url(
    client: httpx.AsyncClient, case: Case
) -> None:
    await sign_in(client, case.support)
    token = await csrf_for(client, "/support")
    with capture_logs() as logs:
        response = await client.post("/support/search", data={"csrf_token": token, "q": EMAIL})
    assert response.status_code == 200  # rendered in the answer: no redirect to a ?q= URL
    assert str(response.url) == "http://rxroute.test/support/search"
    assert f'href="/support/prescriptions/{case.prescription.id}"' in response.text
    assert f'value="{EMAIL}"' in response.text  # kept in the box, for the next search
    for url in URL_ATTRIBUTES.findall(response.text):
        assert "@" not in url and "search.me" not in url, url
    assert EMAIL not in json.dumps(logs, default=str)
    assert [entry["path"] for entry in logs if entry.get("event") == "request"] == [
        "/support/search"
    ]


async def test_a_query_in_the_url_is_not_searched(client: httpx.AsyncClient, case: Case) -> None:
    """An old bookmark with ``?q=`` shows the console, not results (and does not echo it)."""
    await sign_in(client, case.support)
    response = await client.get("/support", params={"q": EMAIL})
    assert response.status_code == 200
    assert EMAIL not in response.text
    assert f"/support/prescriptions/{case.prescription.id}" not in response.text


async def test_a_search_without_the_token_is_refused(client: httpx.AsyncClient, case: Case) -> None:
    await sign_in(client, case.support)
    for data in ({"q": EMAIL}, {"q": EMAIL, "csrf_token": "forged"}):
        response = await client.post("/support/search", data=data)
        assert response.status_code == 403
        assert str(case.prescription.id) not in response.text


async def test_only_staff_may_search(client: httpx.AsyncClient, case: Case) -> None:
    await sign_in(client, case.patient_user)
    token = await csrf_for(client, "/prescriptions")
    response = await client.post("/support/search", data={"csrf_token": token, "q": EMAIL})
    assert response.status_code == 403
    client.cookies.clear()
    signed_out = await client.post("/support/search", data={"q": EMAIL})
    assert signed_out.status_code == 303
    assert EMAIL not in signed_out.headers["location"]
