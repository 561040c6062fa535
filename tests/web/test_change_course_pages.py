"""The patient changes course from the prescription page: another pharmacy, or cancel.

Through the real pages (sign-in, CSRF tokens read from the pages, form posts), against the
real ledger and job queue. The prescriptions here were queued but never reached the far
side, so nothing calls the platform at request time; the one test that needs the platform
(an unreachable one when cancelling, then a reachable one) uses the sandbox.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.deliveries import commands
from rxroute.models import (
    Delivery,
    Patient,
    Pharmacy,
    Prescriber,
    Prescription,
    Role,
    User,
)
from rxroute.prescriptions.history import history
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from rxroute.web.patient_changes import UNREACHABLE
from tests import factories
from tests.erx_sandbox import Erx, queue_for_erx, send_until_done
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.web.helpers import HTML, checked_region, csrf_of, sign_in


@dataclass
class World:
    user: User
    mine: Prescription
    theirs: Prescription
    at_b1: Pharmacy
    b2: Pharmacy
    a1: Pharmacy


async def _queued(
    session: AsyncSession, patient: Patient, prescriber: Prescriber, pharmacy: Pharmacy
) -> Prescription:
    """Sent by the patient, not yet picked up by a worker: no platform call so far."""
    prescription = await factories.make_prescription(
        session,
        patient,
        prescriber,
        region=pharmacy.region,
        channel="erx" if pharmacy.region == "B" else "email",
        pharmacy_id=pharmacy.id,
    )
    await factories.queue_delivery(session, prescription.id, source=Source.PATIENT)
    return prescription


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await factories.make_patient(session, region="B")
    other = await factories.make_patient(session, region="B")
    user = await factories.make_user(session, Role.PATIENT, patient=patient)
    await factories.make_user(session, Role.PATIENT, patient=other)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    at_b1 = await factories.make_pharmacy(
        session, "B", name="Wellbeing Leeds Central", platform_contact_id=5001
    )
    b2 = await factories.make_pharmacy(
        session,
        "B",
        name="Kirkgate Pharmacy",
        address_line1="7 Kirkgate",
        town="Leeds",
        postcode="LS2 7DJ",
        platform_contact_id=5002,
    )
    a1 = await factories.make_pharmacy(
        session,
        "A",
        name="Harbour Chemist",
        address_line1="1 Harbour Road",
        town="Bristol",
        postcode="BS1 4RN",
    )
    mine = await _queued(session, patient, prescriber, at_b1)
    theirs = await _queued(session, other, prescriber, at_b1)
    await session.commit()
    return World(user, mine, theirs, at_b1, b2, a1)


@pytest.fixture
async def patient(client: httpx.AsyncClient, world: World) -> httpx.AsyncClient:
    await sign_in(client, world.user.email)
    return client


async def _token(client: httpx.AsyncClient, prescription_id: uuid.UUID) -> str:
    return csrf_of(await client.get(f"/prescriptions/{prescription_id}", headers=HTML))


async def _deliveries(session: AsyncSession, prescription_id: uuid.UUID) -> list[Delivery]:
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.prescription_id == prescription_id)
            .order_by(Delivery.number)
            .execution_options(populate_existing=True)
        )
    )


async def _send_jobs(session: AsyncSession, prescription_id: uuid.UUID) -> int:
    found = await session.scalar(
        text(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'send_prescription' "
            "AND status = 'todo' AND args->>'prescription_id' = :pid"
        ),
        {"pid": str(prescription_id)},
    )
    return int(found or 0)


async def _status(session: AsyncSession, prescription_id: uuid.UUID) -> str:
    found = await session.get(Prescription, prescription_id, populate_existing=True)
    assert found is not None
    return found.status


# --- what the page offers -----------------------------------------------------------------


async def test_a_sent_prescription_offers_change_and_cancel_but_no_send_form(
    patient: httpx.AsyncClient, world: World
) -> None:
    page = await patient.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    assert page.status_code == 200
    assert 'id="change-form"' in page.text
    assert f'action="/prescriptions/{world.mine.id}/change"' in page.text
    assert 'id="cancel-button"' in page.text
    assert 'id="send-form"' not in page.text
    # The change form reuses the send form's region choice, preset to where it is going.
    assert checked_region(page.text) == "B"


async def test_a_draft_offers_neither(
    patient: httpx.AsyncClient, session: AsyncSession, world: World, db: Runtime
) -> None:
    prescriber = await factories.make_prescriber(session, db.secret_box)
    draft = await factories.make_prescription(
        session, await _patient_of(session, world), prescriber, region="B"
    )
    await session.commit()
    page = await patient.get(f"/prescriptions/{draft.id}", headers=HTML)
    assert 'id="send-form"' in page.text
    assert 'id="change-form"' not in page.text and 'id="cancel-button"' not in page.text
    refused = await patient.get(f"/prescriptions/{draft.id}/cancel", headers=HTML)
    assert refused.status_code == 409
    assert 'id="confirm-cancel"' not in refused.text


async def _patient_of(session: AsyncSession, world: World) -> Patient:
    found = await session.get(Patient, world.user.patient_id)
    assert found is not None
    return found


# --- change pharmacy ------------------------------------------------------------------------


async def test_search_without_javascript_lists_the_regions_pharmacies(
    patient: httpx.AsyncClient, world: World
) -> None:
    page = await patient.get(
        f"/prescriptions/{world.mine.id}/change",
        params={"region": "A", "q": "bristol", "action": "search", "pharmacy_id": ""},
        headers=HTML,
    )
    assert page.status_code == 200
    assert 'id="change-form"' in page.text
    assert f'name="choose" value="{world.a1.id}"' in page.text
    assert "1 Harbour Road, Bristol, BS1 4RN" in page.text
    assert checked_region(page.text) == "A"


async def test_confirm_step_names_the_pharmacy_and_its_address(
    patient: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    page = await patient.get(
        f"/prescriptions/{world.mine.id}/change",
        params={"region": "A", "q": "bristol", "choose": str(world.a1.id), "pharmacy_id": ""},
        headers=HTML,
    )
    assert page.status_code == 200
    assert 'id="new-pharmacy-name">Harbour Chemist<' in page.text
    assert 'id="new-pharmacy-address">1 Harbour Road, Bristol, BS1 4RN<' in page.text
    assert "instead of <strong" in page.text and "Wellbeing Leeds Central" in page.text
    # What happens to the copy at the old pharmacy, before anything new goes out.
    assert "e-prescription platform" in page.text
    assert 'id="action-reason"' in page.text
    assert 'id="confirm-send"' in page.text
    assert 'name="csrf_token"' in page.text
    # Looking is not doing: nothing changed yet.
    assert len(await _deliveries(session, world.mine.id)) == 1
    assert await _send_jobs(session, world.mine.id) == 0


async def test_performing_a_change_creates_delivery_2_and_queues_the_job(
    patient: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    assert await _send_jobs(session, world.mine.id) == 0
    response = await patient.post(
        f"/prescriptions/{world.mine.id}/change",
        data={
            "csrf_token": await _token(patient, world.mine.id),
            "region": "A",
            "pharmacy_id": str(world.a1.id),
            "reason": "moved to Bristol",
        },
        headers=HTML,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/prescriptions/{world.mine.id}?changed=1"

    first, second = await _deliveries(session, world.mine.id)
    assert (first.number, first.state) == (1, "superseded")
    assert (second.number, second.state, second.channel, second.region) == (
        2,
        "pending",
        "email",
        "A",
    )
    assert second.pharmacy_id == world.a1.id
    assert second.actor == str(world.user.id) and second.reason == "moved to Bristol"
    current = await session.get(Prescription, world.mine.id, populate_existing=True)
    assert current is not None
    assert (current.status, current.pharmacy_id, current.current_delivery_id) == (
        "queued",
        world.a1.id,
        second.id,
    )
    # The send job was queued in the same transaction.
    assert await _send_jobs(session, world.mine.id) == 1
    last = (await history(session, world.mine.id))[-1]
    assert (last.status, last.source, last.delivery_id) == ("queued", "patient", second.id)
    assert "moved to Bristol" in (last.detail or "")

    page = await patient.get(response.headers["location"], headers=HTML)
    assert "Pharmacy changed" in page.text
    assert "Harbour Chemist" in page.text and "1 Harbour Road, Bristol, BS1 4RN" in page.text
    # The timeline says which pharmacy each step was about.
    assert '<span class="tl-where small"> &middot; Harbour Chemist</span>' in page.text
    assert '<span class="tl-where small"> &middot; Wellbeing Leeds Central</span>' in page.text
    timeline = page.text[page.text.index('id="timeline"') :]
    assert "Going to a different pharmacy" in timeline


async def test_change_to_where_it_is_going_already_is_refused(
    patient: httpx.AsyncClient, world: World
) -> None:
    page = await patient.get(
        f"/prescriptions/{world.mine.id}/change",
        params={"region": "B", "choose": str(world.at_b1.id)},
        headers=HTML,
    )
    assert page.status_code == 422
    assert "already going to this pharmacy" in page.text
    assert 'id="confirm-send"' not in page.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"region": "A", "action": "review"}, "Choose a pharmacy from the list."),
        ({"region": "A", "choose": "not-an-id"}, "Choose a pharmacy from the list."),
        ({"region": "A", "choose": str(uuid.uuid4())}, "No active accepted pharmacy has this id"),
        ({"region": "Z", "choose": "b2"}, "Choose your region."),
        ({"region": "A", "choose": "b2"}, "This pharmacy is in region B, not A"),
    ],
)
async def test_bad_choices_come_back_as_field_errors(
    patient: httpx.AsyncClient, world: World, params: dict[str, str], message: str
) -> None:
    if params.get("choose") == "b2":
        params = {**params, "choose": str(world.b2.id)}
    page = await patient.get(f"/prescriptions/{world.mine.id}/change", params=params, headers=HTML)
    assert page.status_code == 422
    assert message in page.text
    assert 'class="field-error"' in page.text
    assert 'id="confirm-send"' not in page.text


async def test_posting_a_change_to_a_dispensed_prescription_is_refused_on_the_page(
    patient: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    token = await _token(patient, world.mine.id)
    await factories.observe_current(session, world.mine.id, Status.DISPENSED, ref="SRXDONE1")
    await session.commit()
    response = await patient.post(
        f"/prescriptions/{world.mine.id}/change",
        data={"csrf_token": token, "region": "A", "pharmacy_id": str(world.a1.id)},
        headers=HTML,
    )
    assert response.status_code == 409
    assert 'role="alert"' in response.text and "cannot be re-routed" in response.text
    assert 'id="confirm-send"' not in response.text
    assert len(await _deliveries(session, world.mine.id)) == 1


# --- cancel ---------------------------------------------------------------------------------


async def test_cancel_confirm_step_says_what_cancelling_does(
    patient: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    page = await patient.get(f"/prescriptions/{world.mine.id}/cancel", headers=HTML)
    assert page.status_code == 200
    assert "What cancelling does" in page.text
    assert "e-prescription platform" in page.text
    assert "ask your prescriber for a new prescription" in page.text
    assert 'id="action-reason"' in page.text and 'id="confirm-cancel"' in page.text
    assert await _status(session, world.mine.id) == "queued"


async def test_cancel_records_voided_with_the_reason_and_the_page_says_why(
    patient: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    response = await patient.post(
        f"/prescriptions/{world.mine.id}/cancel",
        data={
            "csrf_token": await _token(patient, world.mine.id),
            "reason": "no longer needed",
        },
        headers=HTML,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/prescriptions/{world.mine.id}"
    assert await _status(session, world.mine.id) == "voided"
    last = (await history(session, world.mine.id))[-1]
    assert (last.status, last.source, last.actor) == ("voided", "patient", str(world.user.id))
    assert last.detail == "no longer needed"
    [delivery] = await _deliveries(session, world.mine.id)
    assert delivery.state == "withdrawn"

    page = await patient.get(response.headers["location"], headers=HTML)
    assert 'id="ending"' in page.text
    assert "This prescription was cancelled" in page.text
    assert "You cancelled it on <time" in page.text
    assert 'id="ending-reason">no longer needed<' in page.text
    assert "ask your prescriber for a new prescription" in page.text
    assert 'id="change-form"' not in page.text and 'id="cancel-button"' not in page.text

    again = await patient.post(
        f"/prescriptions/{world.mine.id}/cancel",
        data={"csrf_token": csrf_of(page)},
        headers=HTML,
    )
    assert again.status_code == 409
    assert "already voided" in again.text
    assert 'id="confirm-cancel"' not in again.text


async def test_a_page_cancelled_by_support_says_why_and_to_contact_the_clinic(
    patient: httpx.AsyncClient, session: AsyncSession, world: World, db: Runtime
) -> None:
    support = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    await commands.cancel(db, support, world.mine.id, reason="prescribed twice by mistake")
    page = await patient.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    assert "Our support team cancelled it" in page.text
    assert 'id="ending-reason">prescribed twice by mistake<' in page.text
    assert "contact the clinic that prescribed it" in page.text


async def test_an_expired_page_says_so_and_what_to_do_next(
    patient: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await factories.observe_current(session, world.mine.id, Status.ISSUED, ref="SRXEXP1")
    await factories.observe_current(
        session, world.mine.id, Status.EXPIRED, source=Source.WEBHOOK, raw_status="expired"
    )
    await session.commit()
    page = await patient.get(f"/prescriptions/{world.mine.id}", headers=HTML)
    assert "This prescription has expired" in page.text
    assert "ask your prescriber for a new prescription" in page.text
    assert 'id="change-form"' not in page.text and 'id="cancel-button"' not in page.text


# --- who may, and CSRF ------------------------------------------------------------------------


async def test_posts_without_the_csrf_token_are_refused(
    patient: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    change = {"region": "A", "pharmacy_id": str(world.a1.id)}
    for data in ({}, {"csrf_token": "0" * 40}):
        for path, form in (("change", change), ("cancel", {"reason": "x"})):
            response = await patient.post(
                f"/prescriptions/{world.mine.id}/{path}", data={**form, **data}, headers=HTML
            )
            assert response.status_code == 403, path
            assert "did not come from rxroute" in response.text
    assert await _status(session, world.mine.id) == "queued"
    assert len(await _deliveries(session, world.mine.id)) == 1


async def test_a_patient_cannot_act_on_someone_elses_prescription(
    patient: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    token = await _token(patient, world.mine.id)
    theirs = world.theirs.id
    for path in (
        f"/prescriptions/{theirs}/change?region=A&choose={world.a1.id}",
        f"/prescriptions/{theirs}/cancel",
    ):
        response = await patient.get(path, headers=HTML)
        assert response.status_code == 404
        assert "There is nothing here." in response.text
    for path, form in (
        ("change", {"region": "A", "pharmacy_id": str(world.a1.id)}),
        ("cancel", {"reason": "not mine"}),
    ):
        response = await patient.post(
            f"/prescriptions/{theirs}/{path}", data={"csrf_token": token, **form}, headers=HTML
        )
        assert response.status_code == 404
    assert await _status(session, theirs) == "queued"
    assert len(await _deliveries(session, theirs)) == 1


async def test_staff_are_sent_to_the_support_console(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    staff = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    await sign_in(client, staff.email)
    response = await client.get(f"/prescriptions/{world.mine.id}/cancel", headers=HTML)
    assert response.status_code == 303 and response.headers["location"] == "/support"


# --- the platform, when cancelling a copy it holds --------------------------------------------


async def test_cancel_while_the_platform_is_unreachable_changes_nothing_then_works(
    erx: Erx, client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    prescriber = await factories.make_prescriber(session, erx.runtime.secret_box)
    issued = await factories.make_prescription(
        session, await _patient_of(session, world), prescriber
    )
    await queue_for_erx(session, issued.id, world.at_b1)
    await session.commit()
    assert (await send_until_done(erx.runtime, issued.id))[-1].result == "issued"
    await sign_in(client, world.user.email)
    token = await _token(client, issued.id)

    erx.reconfigure(erx_base_url="http://127.0.0.1:9", erx_send_max_attempts=1)
    refused = await client.post(
        f"/prescriptions/{issued.id}/cancel",
        data={"csrf_token": token, "reason": "changed my mind"},
        headers=HTML,
    )
    assert refused.status_code == 503
    assert UNREACHABLE in refused.text
    assert "nothing was changed" in refused.text and 'role="alert"' in refused.text
    assert 'id="confirm-cancel"' in refused.text  # try again from the same page
    assert 'value="changed my mind"' in refused.text
    assert await _status(session, issued.id) == "issued"
    [delivery] = await _deliveries(session, issued.id)
    assert delivery.state == "live"

    erx.reconfigure(erx_base_url=erx.sandbox.url, erx_send_max_attempts=8)
    done = await client.post(
        f"/prescriptions/{issued.id}/cancel",
        data={"csrf_token": token, "reason": "changed my mind"},
        headers=HTML,
    )
    assert done.status_code == 303, done.text
    assert await _status(session, issued.id) == "voided"
    remote = await erx.control("GET", f"/_sandbox/prescriptions/{delivery.provider_ref}")
    assert remote["data"]["prescription"]["status"] == "voided"
    page = await client.get(f"/prescriptions/{issued.id}", headers=HTML)
    assert 'id="ending-reason">changed my mind<' in page.text
