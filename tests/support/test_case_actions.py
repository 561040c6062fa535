"""The case page's actions: notes, the patient's email, change of pharmacy; who did what.

Each action goes through a confirm step; the email change and the re-route need a reason,
recorded in the history with the staff actor; a patient (or anyone without the support
role) is refused; actors are shown by name or email, never as a bare UUID.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from rxroute.models import CaseNote, Patient, Pharmacy, Prescription, Role, User
from rxroute.prescriptions.history import history, record_note
from rxroute.prescriptions.lifecycle import Source
from rxroute.runtime import Runtime
from tests import factories
from tests.staff_pages import csrf_for, sign_in

NOTE = "Patient called: Ada will collect on Friday.\nSecond line."


@dataclass
class World:
    support: User
    admin: User
    patient_user: User
    patient: Patient
    prescription: Prescription
    other_pharmacy: Pharmacy


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await factories.make_patient(
        session, first_name="Ada", last_name="Lovelace", email="ada.old@example.com"
    )
    patient_user = await factories.make_user(session, Role.PATIENT, patient=patient)
    support = await factories.make_user(session, Role.SUPPORT, email="sam.support@example.com")
    admin = await factories.make_user(session, Role.ADMIN)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    first = await factories.make_pharmacy(session, "B", name="Wellbeing Leeds Central")
    other = await factories.make_pharmacy(session, "B", name="Harbour Chemist Leeds")
    prescription = await factories.make_prescription(
        session, patient, prescriber, region="B", channel="erx", pharmacy_id=first.id
    )
    await factories.queue_delivery(
        session, prescription.id, source=Source.PATIENT, actor=str(patient_user.id)
    )
    await session.commit()
    return World(support, admin, patient_user, patient, prescription, other)


@pytest.fixture
async def as_support(client: httpx.AsyncClient, world: World) -> httpx.AsyncClient:
    await sign_in(client, world.support)
    return client


def _case(world: World, tail: str = "") -> str:
    return f"/support/prescriptions/{world.prescription.id}{tail}"


async def _notes(session: AsyncSession, prescription_id: uuid.UUID) -> list[CaseNote]:
    return list(
        await session.scalars(
            select(CaseNote)
            .where(CaseNote.prescription_id == prescription_id)
            .order_by(CaseNote.seq)
            .execution_options(populate_existing=True)
        )
    )


# --- the case page ----------------------------------------------------------------------


async def test_case_page_shows_medicines_dob_phone_and_copyable_ids(
    as_support: httpx.AsyncClient, world: World
) -> None:
    page = (await as_support.get(_case(world))).text
    assert 'id="medicines"' in page and "Semaglutide 0.25mg pen 0" in page
    assert "Inject once weekly" in page
    assert "7 March 1985" in page and "+44 7700 900123" in page
    assert f'data-copy-text="{world.prescription.id}"' in page  # support.js adds "Copy"
    assert '<script src="/static/support.js"' in page
    assert 'class="table-wrap"' in page  # wide tables scroll inside their card


# --- notes ------------------------------------------------------------------------------


async def test_a_note_is_confirmed_then_kept_and_shown_with_its_author(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    token = await csrf_for(as_support, _case(world))
    with capture_logs() as logs:
        confirm = await as_support.post(
            _case(world, "/notes"), data={"csrf_token": token, "body": NOTE}
        )
        assert confirm.status_code == 200
        assert 'id="confirm-note"' in confirm.text and 'id="note-preview"' in confirm.text
        assert "cannot be edited or deleted" in confirm.text
        assert await _notes(session, world.prescription.id) == []  # not before confirming

        done = await as_support.post(
            _case(world, "/notes"), data={"csrf_token": token, "body": NOTE, "confirm": "yes"}
        )
    assert done.status_code == 303
    assert done.headers["location"] == _case(world, "?done=noted#notes")
    [note] = await _notes(session, world.prescription.id)
    assert (note.body, note.author_user_id) == (NOTE, world.support.id)
    page = (await as_support.get(done.headers["location"])).text
    notes = page[page.index('id="notes"') : page.index('id="note-form"')]
    assert "Patient called: Ada will collect on Friday." in notes
    assert "sam.support@example.com (support)" in notes
    assert "The note was added." in page
    # The body is PHI: the log line has ids only.
    assert "Ada will collect" not in repr(logs)
    assert any(entry.get("event") == "case_note_added" for entry in logs)


@pytest.mark.parametrize("body", ["", "   \n  ", "x" * 4001])
async def test_an_empty_or_overlong_note_is_refused(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, body: str
) -> None:
    token = await csrf_for(as_support, _case(world))
    for confirm in ("", "yes"):
        response = await as_support.post(
            _case(world, "/notes"), data={"csrf_token": token, "body": body, "confirm": confirm}
        )
        assert response.status_code == 422
        assert "body: " in response.text
    assert await _notes(session, world.prescription.id) == []


async def test_notes_are_append_only(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    prescription_id = world.prescription.id
    token = await csrf_for(as_support, _case(world))
    await as_support.post(
        _case(world, "/notes"), data={"csrf_token": token, "body": "first", "confirm": "yes"}
    )
    for statement in ("UPDATE case_notes SET body = 'changed'", "DELETE FROM case_notes"):
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text(statement))
        await session.rollback()
    assert [n.body for n in await _notes(session, prescription_id)] == ["first"]


# --- the patient's email ----------------------------------------------------------------


async def test_email_change_has_a_confirm_step_and_needs_a_reason(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    assert 'action="/support/prescriptions/' in (await as_support.get(_case(world))).text
    confirm = await as_support.get(_case(world, "/email"))
    assert confirm.status_code == 200
    assert 'id="action-reason"' in confirm.text and 'id="confirm-email"' in confirm.text
    assert "ada.old@example.com" in confirm.text
    token = await csrf_for(as_support, _case(world, "/email"))
    for reason in ("", "   "):
        response = await as_support.post(
            _case(world, "/email"),
            data={"csrf_token": token, "email": "ada.new@example.com", "reason": reason},
        )
        assert response.status_code == 422
        assert "reason: say why" in response.text and 'id="confirm-email"' in response.text
    patient = await session.get(Patient, world.patient.id, populate_existing=True)
    assert patient is not None and patient.email == "ada.old@example.com"


@pytest.mark.parametrize("address", ["not-an-address", "ada@", "a b@example.com", ""])
async def test_email_change_refuses_an_invalid_address(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, address: str
) -> None:
    token = await csrf_for(as_support, _case(world, "/email"))
    response = await as_support.post(
        _case(world, "/email"),
        data={"csrf_token": token, "email": address, "reason": "typo at sign-up"},
    )
    assert response.status_code == 422
    assert "email: Enter an email address like name@example.com" in response.text
    patient = await session.get(Patient, world.patient.id, populate_existing=True)
    assert patient is not None and patient.email == "ada.old@example.com"


async def test_email_change_is_made_and_recorded_with_the_staff_actor(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    token = await csrf_for(as_support, _case(world, "/email"))
    with capture_logs() as logs:
        response = await as_support.post(
            _case(world, "/email"),
            data={
                "csrf_token": token,
                "email": " Ada.New@Example.com ",
                "reason": "patient phoned: typo at sign-up",
            },
        )
    assert response.status_code == 303
    assert response.headers["location"] == _case(world, "?done=email")
    patient = await session.get(Patient, world.patient.id, populate_existing=True)
    assert patient is not None and patient.email == "ada.new@example.com"
    sign_in_user = await session.get(User, world.patient_user.id, populate_existing=True)
    assert sign_in_user is not None and sign_in_user.email == world.patient_user.email
    last = (await history(session, world.prescription.id))[-1]
    assert (last.source, last.actor) == ("support", str(world.support.id))
    assert "patient phoned: typo at sign-up" in (last.detail or "")
    assert "example.com" not in (last.detail or "")  # no address in the history
    assert "ada.new" not in repr(logs).lower() and "ada.old" not in repr(logs).lower()
    page = (await as_support.get(response.headers["location"])).text
    assert "ada.new@example.com" in page
    assert "The patient&#39;s email address was changed." in page
    timeline = page[page.index('id="timeline"') : page.index('id="events-heading"')]
    assert "sam.support@example.com (support)" in timeline


async def test_the_same_address_again_is_refused(
    as_support: httpx.AsyncClient, world: World
) -> None:
    token = await csrf_for(as_support, _case(world, "/email"))
    response = await as_support.post(
        _case(world, "/email"),
        data={"csrf_token": token, "email": "ADA.OLD@example.com", "reason": "check"},
    )
    assert response.status_code == 409
    assert "already has this address" in response.text


# --- change of pharmacy (re-route) ------------------------------------------------------


async def test_change_of_pharmacy_needs_a_reason_and_names_the_staff_member(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    choose = await as_support.get(
        _case(world, "/reroute"),
        params={"region": "B", "pharmacy_id": str(world.other_pharmacy.id)},
    )
    assert choose.status_code == 200
    assert 'id="action-reason"' in choose.text and "Harbour Chemist Leeds" in choose.text
    token = await csrf_for(as_support, _case(world))
    form = {"csrf_token": token, "region": "B", "pharmacy_id": str(world.other_pharmacy.id)}
    missing = await as_support.post(_case(world, "/reroute"), data={**form, "reason": ""})
    assert missing.status_code == 422 and "reason: say why" in missing.text
    done = await as_support.post(
        _case(world, "/reroute"), data={**form, "reason": "pharmacy closed for refit"}
    )
    assert done.status_code == 303
    current = await session.get(Prescription, world.prescription.id, populate_existing=True)
    assert current is not None and current.pharmacy_id == world.other_pharmacy.id
    page = (await as_support.get(_case(world))).text
    deliveries = page[page.index('id="deliveries"') : page.index('id="timeline-heading"')]
    assert "pharmacy closed for refit" in deliveries
    assert "by sam.support@example.com (support)" in deliveries
    assert "by Ada Lovelace (patient)" in deliveries
    assert str(world.support.id) not in page and str(world.patient_user.id) not in page


# --- actors -----------------------------------------------------------------------------


async def test_api_clients_and_unknown_users_are_named_not_shown_as_ids(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    ghost = str(uuid.uuid4())
    for actor in ("api:Acme Health", ghost):
        await record_note(
            session, world.prescription.id, source=Source.API, actor=actor, detail="asked"
        )
    await session.commit()
    page = (await as_support.get(_case(world))).text
    timeline = page[page.index('id="timeline"') : page.index('id="events-heading"')]
    assert "Acme Health (API client)" in timeline and "api:Acme" not in timeline
    assert "unknown user" in timeline and ghost not in timeline


# --- role guard -------------------------------------------------------------------------


async def test_a_patient_may_not_use_the_actions(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await sign_in(client, world.patient_user)
    token = await csrf_for(client, "/prescriptions")
    for path in ("/email", "/reroute", "/void"):
        response = await client.get(_case(world, path), headers={"accept": "text/html"})
        assert response.status_code == 403, path
    posts = {
        "/notes": {"body": "mine", "confirm": "yes"},
        "/email": {"email": "evil@example.com", "reason": "takeover"},
        "/reroute": {
            "region": "B",
            "pharmacy_id": str(world.other_pharmacy.id),
            "reason": "mine",
        },
    }
    for path, data in posts.items():
        response = await client.post(_case(world, path), data={"csrf_token": token, **data})
        assert response.status_code == 403, path
    assert await _notes(session, world.prescription.id) == []
    patient = await session.get(Patient, world.patient.id, populate_existing=True)
    assert patient is not None and patient.email == "ada.old@example.com"
    client.cookies.clear()
    signed_out = await client.get(_case(world, "/email"))
    assert signed_out.status_code == 303 and "/login" in signed_out.headers["location"]


@pytest.mark.parametrize("path", ["/notes", "/email"])
async def test_the_new_actions_need_the_csrf_token(
    as_support: httpx.AsyncClient, world: World, session: AsyncSession, path: str
) -> None:
    data = {"body": "x", "confirm": "yes", "email": "ada.new@example.com", "reason": "r"}
    for token in ({}, {"csrf_token": "forged"}):
        response = await as_support.post(_case(world, path), data={**data, **token})
        assert response.status_code == 403
    assert await _notes(session, world.prescription.id) == []


async def test_admin_may_add_a_note(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await sign_in(client, world.admin)
    token = await csrf_for(client, _case(world))
    response = await client.post(
        _case(world, "/notes"), data={"csrf_token": token, "body": "checked", "confirm": "yes"}
    )
    assert response.status_code == 303
    assert [n.author_user_id for n in await _notes(session, world.prescription.id)] == [
        world.admin.id
    ]
