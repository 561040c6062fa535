"""The patient pages without a browser: who sees what, CSRF, the send form and escaping."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Pharmacy, Prescription, Role, User
from rxroute.prescriptions.history import history, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from rxroute.web.patient_pages import FAILURE_HEADLINE
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
)
from tests.web.helpers import HTML, checked_region, csrf_of, sign_in

XSS = '<script>alert("x")</script>'


@dataclass
class World:
    user: User
    mine: Prescription
    theirs: Prescription
    pharmacy_b: Pharmacy
    pharmacy_a: Pharmacy


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await make_patient(session, region="B")
    other = await make_patient(session, region="A")
    user = await make_user(session, Role.PATIENT, patient=patient)
    await make_user(session, Role.PATIENT, patient=other)
    prescriber = await make_prescriber(session, db.secret_box)
    mine = await make_prescription(session, patient, prescriber, items=2, region="B")
    theirs = await make_prescription(session, other, prescriber, region="A")
    pharmacy_b = await make_pharmacy(
        session, "B", name="Wellbeing Leeds Central", town="Leeds", postcode="LS1 4AP"
    )
    pharmacy_a = await make_pharmacy(session, "A", name="Harbour Chemist", town="Bristol")
    await session.commit()
    return World(user, mine, theirs, pharmacy_b, pharmacy_a)


async def _jobs(session: AsyncSession) -> int:
    return int(await session.scalar(text("SELECT count(*) FROM procrastinate_jobs")) or 0)


async def test_pages_need_sign_in(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=/prescriptions/{world.mine.id}"


async def test_list_shows_only_my_prescriptions(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.user.email)
    page = await client.get("/prescriptions", headers=HTML)
    assert page.status_code == 200
    assert f"/prescriptions/{world.mine.id}" in page.text
    assert str(world.theirs.id) not in page.text
    assert "Ready to send" in page.text
    assert "Semaglutide 0.25mg pen 1" in page.text


async def test_staff_are_sent_to_the_support_console(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    staff = await make_user(session, Role.SUPPORT)
    await session.commit()
    await sign_in(client, staff.email)
    for path in ("/prescriptions", f"/prescriptions/{world.mine.id}"):
        response = await client.get(path, headers=HTML)
        assert response.status_code == 303
        assert response.headers["location"] == "/support"


async def test_another_patients_prescription_is_not_found(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.user.email)
    for path in (f"/prescriptions/{world.theirs.id}", f"/prescriptions/{uuid.uuid4()}"):
        response = await client.get(path, headers=HTML)
        assert response.status_code == 404
        assert "There is nothing here." in response.text
        assert str(world.theirs.id) not in response.text
    garbage = await client.get("/prescriptions/not-a-uuid", headers=HTML)
    assert garbage.status_code == 404
    page = await client.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    post = await client.post(
        f"/prescriptions/{world.theirs.id}/send",
        data={"csrf_token": csrf_of(page), "region": "A", "pharmacy_id": str(world.pharmacy_a.id)},
        headers=HTML,
    )
    assert post.status_code == 404


async def test_send_form_needs_the_csrf_token(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await sign_in(client, world.user.email)
    form = {"region": "B", "pharmacy_id": str(world.pharmacy_b.id), "action": "send"}
    missing = await client.post(f"/prescriptions/{world.mine.id}/send", data=form, headers=HTML)
    wrong = await client.post(
        f"/prescriptions/{world.mine.id}/send", data={**form, "csrf_token": "0" * 40}, headers=HTML
    )
    assert missing.status_code == wrong.status_code == 403
    assert "did not come from rxroute" in missing.text
    still = await session.get(Prescription, world.mine.id, populate_existing=True)
    assert still is not None and still.status == "draft"
    assert await _jobs(session) == 0


async def test_detail_page_defaults_to_the_prescriptions_region(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.user.email)
    page = await client.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    assert page.status_code == 200
    assert checked_region(page.text) == "B"
    assert 'id="send-form"' in page.text
    assert 'name="csrf_token"' in page.text
    assert "Inject once weekly" in page.text


async def test_missing_pharmacy_is_a_field_error_keeping_what_was_typed(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await sign_in(client, world.user.email)
    page = await client.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    response = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={"csrf_token": csrf_of(page), "region": "A", "q": "bristol", "action": "send"},
        headers=HTML,
    )
    assert response.status_code == 422
    assert 'id="pharmacy-error">Choose a pharmacy from the list.' in response.text
    assert 'value="bristol"' in response.text
    assert checked_region(response.text) == "A"
    # The error summary names it too, and links to the field.
    assert '<a href="#pharmacy-search">Choose a pharmacy from the list.</a>' in response.text
    # The typed query was searched again, in the typed region.
    assert "Harbour Chemist" in response.text
    assert await _jobs(session) == 0


async def test_pharmacy_from_another_region_is_refused_keeping_values(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.user.email)
    page = await client.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    response = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={
            "csrf_token": csrf_of(page),
            "region": "B",
            "q": "harbour",
            "pharmacy_id": str(world.pharmacy_a.id),
            "action": "send",
        },
        headers=HTML,
    )
    assert response.status_code == 422
    assert "This pharmacy is in region A, not B" in response.text
    assert 'value="harbour"' in response.text
    assert checked_region(response.text) == "B"
    bad_region = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={
            "csrf_token": csrf_of(page),
            "region": "Z",
            "pharmacy_id": str(world.pharmacy_b.id),
        },
        headers=HTML,
    )
    assert bad_region.status_code == 422
    assert 'id="region-error">Choose your region.' in bad_region.text
    bad_id = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={"csrf_token": csrf_of(page), "region": "B", "pharmacy_id": "nope"},
        headers=HTML,
    )
    assert bad_id.status_code == 422
    assert "Choose a pharmacy from the list." in bad_id.text


async def test_send_queues_the_job_and_confirms(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await sign_in(client, world.user.email)
    page = await client.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    # "Continue" (an old form's "send" too) only leads to the confirm step.
    review = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={
            "csrf_token": csrf_of(page),
            "region": "B",
            "pharmacy_id": str(world.pharmacy_b.id),
            "action": "send",
        },
        headers=HTML,
    )
    assert review.status_code == 303
    confirm_url = (
        f"/prescriptions/{world.mine.id}/send/confirm?region=B&pharmacy_id={world.pharmacy_b.id}"
    )
    assert review.headers["location"] == confirm_url
    assert await _jobs(session) == 0
    draft = await session.get(Prescription, world.mine.id, populate_existing=True)
    assert draft is not None and draft.status == "draft"
    confirm = await client.get(confirm_url, headers=HTML)
    assert confirm.status_code == 200
    assert 'id="confirm-pharmacy-name">Wellbeing Leeds Central<' in confirm.text
    assert "2 High Street, Leeds, LS1 4AP" in confirm.text
    assert "Only then can Wellbeing Leeds Central see it." in confirm.text
    assert 'id="confirm-send"' in confirm.text and 'value="confirm"' in confirm.text
    assert 'name="csrf_token"' in confirm.text
    response = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={
            "csrf_token": csrf_of(confirm),
            "region": "B",
            "pharmacy_id": str(world.pharmacy_b.id),
            "action": "confirm",
        },
        headers=HTML,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/prescriptions/{world.mine.id}?sent=1"
    sent = await session.get(Prescription, world.mine.id, populate_existing=True)
    assert sent is not None
    assert (sent.status, sent.region, sent.channel) == ("queued", "B", "erx")
    assert sent.pharmacy_id == world.pharmacy_b.id
    assert await _jobs(session) == 1
    events = await history(session, world.mine.id)
    assert [(e.status, e.source, e.actor) for e in events] == [
        ("queued", "patient", str(world.user.id))
    ]
    confirmation = await client.get(response.headers["location"], headers=HTML)
    assert (
        "<strong>Sent for processing</strong> to <strong>Wellbeing Leeds Central</strong>"
        in confirmation.text
    )
    assert 'data-poll="yes"' in confirmation.text
    assert 'id="send-form"' not in confirmation.text
    assert "Waiting to send" in confirmation.text
    # The prescriber's writing stays first in the timeline, then the patient's choice.
    timeline = confirmation.text[confirmation.text.index('id="timeline"') :]
    assert timeline.index("Written by your prescriber") < timeline.index("You chose the pharmacy")
    # A second confirm (another tab) sends nothing again; the confirm page is gone too.
    again = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={
            "csrf_token": csrf_of(page),
            "region": "B",
            "pharmacy_id": str(world.pharmacy_b.id),
            "action": "confirm",
        },
        headers=HTML,
    )
    assert again.status_code == 409
    stale = await client.get(confirm_url, headers=HTML)
    assert stale.status_code == 303
    assert stale.headers["location"] == f"/prescriptions/{world.mine.id}"
    assert "cannot be sent again" in again.text
    assert await _jobs(session) == 1


async def test_no_js_search_and_choose(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.user.email)
    page = await client.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    token = csrf_of(page)
    search = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={"csrf_token": token, "region": "B", "q": "ls1 4", "action": "search"},
        headers=HTML,
    )
    assert search.status_code == 303
    location = search.headers["location"]
    assert location == f"/prescriptions/{world.mine.id}?region=B&q=ls1+4"
    assert "csrf" not in location
    results = await client.get(location, headers=HTML)
    assert "1 pharmacy found" in results.text
    assert f'name="choose" value="{world.pharmacy_b.id}"' in results.text
    assert "2 High Street, Leeds, LS1 4AP" in results.text
    choose = await client.post(
        f"/prescriptions/{world.mine.id}/send",
        data={"csrf_token": token, "region": "B", "q": "ls1 4", "choose": str(world.pharmacy_b.id)},
        headers=HTML,
    )
    assert choose.status_code == 303
    chosen = await client.get(choose.headers["location"], headers=HTML)
    assert f'id="pharmacy-id" value="{world.pharmacy_b.id}"' in chosen.text
    assert 'id="chosen-name">Wellbeing Leeds Central<' in chosen.text


@pytest.mark.parametrize(
    "query",
    [
        XSS,
        "%_\\' OR 1=1 --",
        "x" * 5000,
        "\x00\x07 ls1",
        "名前 🙂 ℞",
        "",
    ],
    ids=["html", "sql-ish", "very-long", "control", "unicode", "empty"],
)
async def test_odd_queries_are_safe_and_escaped(
    client: httpx.AsyncClient, world: World, query: str
) -> None:
    await sign_in(client, world.user.email)
    page = await client.get(
        f"/prescriptions/{world.mine.id}", params={"q": query, "region": "B"}, headers=HTML
    )
    assert page.status_code == 200
    assert XSS not in page.text
    if query == XSS:
        assert str(escape(XSS)) in page.text
    api = await client.get("/api/v1/pharmacies", params={"region": "B", "q": query[:500]})
    assert api.status_code == 200
    assert isinstance(api.json()["results"], list)


async def test_html_in_data_is_escaped(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    evil = await make_pharmacy(session, "B", name=XSS, town="Leeds")
    prescription = await session.get(Prescription, world.mine.id)
    assert prescription is not None
    prescription.pharmacy_id = evil.id
    prescription.notes = XSS
    await session.commit()
    await sign_in(client, world.user.email)
    for path in (
        "/prescriptions",
        f"/prescriptions/{world.mine.id}?q=script&pharmacy_id={evil.id}",
    ):
        page = await client.get(path, headers=HTML)
        assert page.status_code == 200
        assert XSS not in page.text
        assert "&lt;script&gt;alert(" in page.text


async def test_failed_send_explains_in_plain_words(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await record_status(session, world.mine.id, Status.QUEUED, source=Source.PATIENT)
    await record_status(session, world.mine.id, Status.SENDING, source=Source.WORKER)
    prescription = await session.get(Prescription, world.mine.id)
    assert prescription is not None
    prescription.failure_reason = "The selected contact is invalid."
    prescription.pharmacy_id = world.pharmacy_b.id
    await record_status(
        session, world.mine.id, Status.FAILED, source=Source.WORKER, detail="contact"
    )
    await session.commit()
    await sign_in(client, world.user.email)
    page = await client.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    assert page.status_code == 200
    assert FAILURE_HEADLINE in page.text
    assert "This pharmacy cannot take the prescription" in page.text
    assert 'id="failure-action">Choose another pharmacy<' in page.text
    # The platform's words are for support only, never on the patient's page.
    assert "The selected contact is invalid." not in page.text
    assert 'id="confirmation"' not in page.text
    # Failed is sendable again: the form is there, and the page does not poll.
    assert 'id="send-form"' in page.text
    assert 'data-poll="no"' in page.text
    count = await session.scalar(select(func.count()).select_from(Prescription))
    assert count == 2
