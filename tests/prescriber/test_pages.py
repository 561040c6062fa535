"""The prescriber's pages: who may open them, patient search, writing a draft."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.models import FormularyItem, Patient, Prescriber, Prescription, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.auth.helpers import bearer
from tests.prescriber.conftest import make_prescriber_user
from tests.staff_pages import csrf_for, sign_in


async def _formulary(session: AsyncSession) -> dict[str, FormularyItem]:
    return {item.description: item for item in await session.scalars(select(FormularyItem))}


async def _drafts(session: AsyncSession) -> list[Prescription]:
    statement = (
        select(Prescription)
        .options(selectinload(Prescription.items))
        .execution_options(populate_existing=True)
    )
    return list(await session.scalars(statement))


SEMAGLUTIDE = "Semaglutide 0.25mg/0.5ml solution for injection pre-filled pen"
ORLISTAT = "Orlistat 120mg capsules"


# --- who may open them --------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PATIENT, Role.SUPPORT, Role.ADMIN])
async def test_other_roles_cannot_open_the_prescriber_pages(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, role: Role
) -> None:
    patient = await factories.make_patient(session) if role is Role.PATIENT else None
    user = await factories.make_user(session, role, patient=patient)
    await session.commit()
    await sign_in(client, user)
    for path in ("/prescriber", f"/prescriber/patients/{uuid.uuid4()}/write"):
        response = await client.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 403, path
        assert "this page is not for your account" in response.text


async def test_a_prescriber_cannot_open_admin_or_support(
    as_prescriber: httpx.AsyncClient,
) -> None:
    for path in ("/admin", "/admin/formulary", "/support", "/admin/users"):
        response = await as_prescriber.get(path)
        assert response.status_code == 403, path
    # The patient pages send them to their own.
    response = await as_prescriber.get("/prescriptions")
    assert response.status_code == 303
    assert response.headers["location"] == "/prescriber"
    # Signing in lands on their home, with their link in the navigation.
    home = await as_prescriber.get("/")
    assert home.headers["location"] == "/prescriber"
    page = await as_prescriber.get("/prescriber")
    assert page.status_code == 200
    assert '<a href="/prescriber">Prescriptions written</a>' in page.text
    assert 'href="/admin"' not in page.text


async def test_an_account_without_a_prescriber_record_gets_a_clear_page(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    user = await make_prescriber_user(session, None)
    patient = await factories.make_patient(session)
    await session.commit()
    await sign_in(client, user)
    home = await client.get("/prescriber")
    assert home.status_code == 200
    assert "not linked to a prescriber record" in home.text
    assert 'action="/prescriber/search"' not in home.text
    write = await client.get(
        f"/prescriber/patients/{patient.id}/write", headers={"Accept": "text/html"}
    )
    assert write.status_code == 403
    assert "not linked to a prescriber record" in write.text


async def test_a_deactivated_prescriber_cannot_write_but_sees_what_they_wrote(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, prescriber: Prescriber
) -> None:
    user = await make_prescriber_user(session, prescriber)
    patient = await factories.make_patient(session, first_name="Olwen")
    await factories.make_prescription(session, patient, prescriber)
    prescriber.active = False
    await session.commit()
    await sign_in(client, user)
    home = await client.get("/prescriber")
    assert home.status_code == 200
    assert "prescriber record is deactivated" in home.text
    assert "Olwen" in home.text
    token = await csrf_for(client, "/prescriber")
    response = await client.post(
        f"/prescriber/patients/{patient.id}/write",
        data={"csrf_token": token, "action": "write"},
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 403
    assert "prescriber record is deactivated" in response.text
    assert len(await _drafts(session)) == 1


# --- home and search ----------------------------------------------------------------------


async def test_home_lists_only_what_this_prescriber_wrote(
    as_prescriber: httpx.AsyncClient,
    session: AsyncSession,
    db: Runtime,
    prescriber: Prescriber,
) -> None:
    mine_patient = await factories.make_patient(session, first_name="Mina", last_name="Mine")
    theirs_patient = await factories.make_patient(session, first_name="Theo", last_name="Theirs")
    other = await factories.make_prescriber(session, db.secret_box)
    mine = await factories.make_prescription(session, mine_patient, prescriber)
    theirs = await factories.make_prescription(session, theirs_patient, other)
    await session.commit()
    page = await as_prescriber.get("/prescriber")
    assert "Mina Mine" in page.text
    assert f"/prescriber/prescriptions/{mine.id}" in page.text
    assert "Theo" not in page.text
    assert str(theirs.id) not in page.text
    assert (await as_prescriber.get(f"/prescriber/prescriptions/{mine.id}")).status_code == 200
    assert (await as_prescriber.get(f"/prescriber/prescriptions/{theirs.id}")).status_code == 404


@pytest.mark.parametrize(
    "query",
    ["jamie", "JAM testp", "jamie.search@example.com", "999 000 0018", "platform-patient-77"],
)
async def test_patient_search_by_name_email_nhs_number_or_external_id(
    as_prescriber: httpx.AsyncClient, session: AsyncSession, query: str
) -> None:
    wanted = await factories.make_patient(
        session,
        first_name="Jamie",
        last_name="Testpatient",
        email="jamie.search@example.com",
        nhs_number="9990000018",
        external_id="platform-patient-77",
    )
    await factories.make_patient(
        session, first_name="Robin", last_name="Other", nhs_number="9990000026"
    )
    await session.commit()
    token = await csrf_for(as_prescriber, "/prescriber")
    response = await as_prescriber.post(
        "/prescriber/search", data={"csrf_token": token, "q": query}
    )
    assert response.status_code == 200
    assert str(response.url).endswith("/prescriber/search")  # nothing typed in the URL
    assert f"/prescriber/patients/{wanted.id}/write" in response.text
    assert "Robin" not in response.text


async def test_patient_search_says_when_nothing_matches_and_ignores_the_url(
    as_prescriber: httpx.AsyncClient, session: AsyncSession
) -> None:
    await factories.make_patient(session, first_name="Jamie")
    await session.commit()
    token = await csrf_for(as_prescriber, "/prescriber")
    none = await as_prescriber.post("/prescriber/search", data={"csrf_token": token, "q": "zz"})
    assert "No patient matches." in none.text
    short = await as_prescriber.post("/prescriber/search", data={"csrf_token": token, "q": "j"})
    assert "at least 2 letters" in short.text
    by_url = await as_prescriber.get("/prescriber?q=jamie")
    assert "Jamie" not in by_url.text


# --- writing ------------------------------------------------------------------------------


async def _write(
    client: httpx.AsyncClient, patient: Patient, lines: list[tuple[str, str, str]], action: str
) -> httpx.Response:
    token = await csrf_for(client, f"/prescriber/patients/{patient.id}/write")
    data: dict[str, str | list[str]] = {
        "csrf_token": token,
        "action": action,
        "medicine": [line[0] for line in lines],
        "quantity": [line[1] for line in lines],
        "directions": [line[2] for line in lines],
    }
    return await client.post(f"/prescriber/patients/{patient.id}/write", data=data)


async def test_writing_creates_a_draft_with_the_chosen_items(
    as_prescriber: httpx.AsyncClient,
    session: AsyncSession,
    prescriber: Prescriber,
) -> None:
    patient = await factories.make_patient(session, region="A")
    await session.commit()
    formulary = await _formulary(session)
    page = await as_prescriber.get(f"/prescriber/patients/{patient.id}/write")
    assert page.status_code == 200
    # Every active line is offered with its defaults for the script to fill in.
    assert page.text.count('data-quantity="') == len(formulary)
    assert 'src="/static/prescriber.js"' in page.text
    semaglutide, orlistat = formulary[SEMAGLUTIDE], formulary[ORLISTAT]
    response = await _write(
        as_prescriber,
        patient,
        [
            (str(semaglutide.id), "2 pens", "Inject 0.25mg once weekly"),
            (str(orlistat.id), "84 capsules", "One with each main meal"),
            ("", "", ""),  # an empty line is skipped
        ],
        "write",
    )
    assert response.status_code == 303, response.text
    [draft] = await _drafts(session)
    assert response.headers["location"] == f"/prescriber/prescriptions/{draft.id}?written=1"
    assert (draft.status, draft.patient_id, draft.prescriber_id) == (
        "draft",
        patient.id,
        prescriber.id,
    )
    assert draft.region == "A"
    assert [
        (i.position, i.description, i.quantity, i.directions, i.dmd_vpid, i.dmd_apid)
        for i in draft.items
    ] == [
        (0, SEMAGLUTIDE, "2 pens", "Inject 0.25mg once weekly", semaglutide.dmd_vpid, None),
        (1, ORLISTAT, "84 capsules", "One with each main meal", "322183008", None),
    ]
    shown = await as_prescriber.get(response.headers["location"])
    assert "Draft written." in shown.text
    assert "One with each main meal" in shown.text
    home = await as_prescriber.get("/prescriber")
    assert f"/prescriber/prescriptions/{draft.id}" in home.text


async def test_mistakes_come_back_with_the_input_kept_and_nothing_written(
    as_prescriber: httpx.AsyncClient, session: AsyncSession
) -> None:
    patient = await factories.make_patient(session)
    await session.commit()
    formulary = await _formulary(session)
    orlistat = formulary[ORLISTAT]
    response = await _write(
        as_prescriber,
        patient,
        [
            (str(orlistat.id), "", "My own <b>directions</b>"),
            ("", "3 packs", "Typed without a medicine"),
            (str(uuid.uuid4()), "1", "Not a formulary line"),
        ],
        "write",
    )
    assert response.status_code == 422
    page = response.text
    assert "Check the medicines marked below." in page
    # Line 1: the quantity is missing; the formulary's default is filled in to check, and
    # the typed directions are kept (escaped).
    assert 'id="quantity-0" name="quantity" value="84 capsules"' in page
    assert "My own &lt;b&gt;directions&lt;/b&gt;</textarea>" in page
    assert re.search(rf'<option value="{orlistat.id}"[^>]*selected>', page)
    assert 'id="quantity-0-error">Enter the quantity.' in page
    assert "default quantity and directions are filled in" in page
    # Line 2: no medicine chosen; line 3: not in the formulary.
    assert 'id="medicine-1-error">Choose a medicine from the formulary.' in page
    assert 'value="3 packs"' in page and "Typed without a medicine" in page
    assert 'id="medicine-2-error">That medicine is not in the formulary' in page
    assert await _drafts(session) == []


async def test_nothing_chosen_and_a_deactivated_line_are_refused(
    as_prescriber: httpx.AsyncClient, session: AsyncSession
) -> None:
    patient = await factories.make_patient(session)
    await session.commit()
    empty = await _write(as_prescriber, patient, [("", "", "")], "write")
    assert empty.status_code == 422
    assert "Add at least one medicine." in empty.text
    orlistat = (await _formulary(session))[ORLISTAT]
    orlistat.active = False
    await session.commit()
    gone = await _write(as_prescriber, patient, [(str(orlistat.id), "1", "Take")], "write")
    assert gone.status_code == 422
    assert "not in the formulary (any more)" in gone.text
    assert ORLISTAT not in gone.text  # no longer offered
    assert await _drafts(session) == []


async def test_without_javascript_lines_are_added_and_removed_by_the_server(
    as_prescriber: httpx.AsyncClient, session: AsyncSession
) -> None:
    patient = await factories.make_patient(session)
    await session.commit()
    orlistat = (await _formulary(session))[ORLISTAT]
    added = await _write(as_prescriber, patient, [(str(orlistat.id), "", "")], "add")
    assert added.status_code == 200
    assert added.text.count("<fieldset data-line>") == 2
    # The chosen medicine's defaults are filled in, as the script would have.
    assert 'id="quantity-0" name="quantity" value="84 capsules"' in added.text
    assert "Take one capsule three times a day with each main meal</textarea>" in added.text
    removed = await _write(
        as_prescriber,
        patient,
        [("", "", "first"), (str(orlistat.id), "84 capsules", "second")],
        "remove-0",
    )
    assert removed.status_code == 200
    assert removed.text.count("<fieldset data-line>") == 1
    assert ">second</textarea>" in removed.text and ">first</textarea>" not in removed.text
    assert await _drafts(session) == []


async def test_too_many_lines_are_refused(
    as_prescriber: httpx.AsyncClient, session: AsyncSession
) -> None:
    patient = await factories.make_patient(session)
    await session.commit()
    orlistat = str((await _formulary(session))[ORLISTAT].id)
    response = await _write(as_prescriber, patient, [(orlistat, "1", "Take")] * 21, "write")
    assert response.status_code == 422
    assert "At most 20 medicines per prescription." in response.text
    assert await _drafts(session) == []


async def test_an_unknown_patient_is_not_found(as_prescriber: httpx.AsyncClient) -> None:
    response = await as_prescriber.get(f"/prescriber/patients/{uuid.uuid4()}/write")
    assert response.status_code == 404


# --- then the patient sends it ------------------------------------------------------------


async def test_the_patient_can_send_the_written_draft(
    as_prescriber: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    patient = await factories.make_patient(session, region="A")
    patient_user = await factories.make_user(session, Role.PATIENT, patient=patient)
    pharmacy = await factories.make_pharmacy(session, "A")
    await session.commit()
    orlistat = (await _formulary(session))[ORLISTAT]
    written = await _write(as_prescriber, patient, [(str(orlistat.id), "84", "Take")], "write")
    assert written.status_code == 303, written.text
    [draft] = await _drafts(session)
    # The patient sees it on their own list, and sends it through the API.
    headers = await bearer(db, patient_user.id)
    listed = await as_prescriber.get("/api/v1/prescriptions", headers=headers)
    assert [p["id"] for p in listed.json()["results"]] == [str(draft.id)]
    sent = await as_prescriber.post(
        f"/api/v1/prescriptions/{draft.id}/send",
        json={"region": "A", "pharmacy_id": str(pharmacy.id)},
        headers=headers,
    )
    assert sent.status_code == 202, sent.text
    await session.refresh(draft)
    assert draft.status == "queued"
    assert draft.pharmacy_id == pharmacy.id
    count = await session.scalar(
        select(func.count()).select_from(Prescription).where(Prescription.patient_id == patient.id)
    )
    assert count == 1


async def test_another_prescriber_user_cannot_see_the_draft(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, prescriber_user: User
) -> None:
    patient = await factories.make_patient(session)
    other = await factories.make_prescriber(session, db.secret_box)
    other_user = await make_prescriber_user(session, other)
    prescriber = await session.get(Prescriber, prescriber_user.prescriber_id)
    assert prescriber is not None
    draft = await factories.make_prescription(session, patient, prescriber)
    await session.commit()
    await sign_in(client, other_user)
    assert (await client.get(f"/prescriber/prescriptions/{draft.id}")).status_code == 404
    assert str(draft.id) not in (await client.get("/prescriber")).text
    api = await client.get(
        f"/api/v1/prescriptions/{draft.id}", headers=await bearer(db, other_user.id)
    )
    assert api.status_code == 404
