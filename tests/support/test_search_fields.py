"""Support's search form, field by field: each finds its prescription and leaves the others.

Two patients, two pharmacies, prescriptions in different states and months; each search
must list the one it names and not the rest. Every search is a POST, so nothing typed is in
a URL (``test_search_by_post.py`` checks that for the email; here for every field too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from rxroute.models import Prescription, Role, User
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.prescriptions.reference import short_reference
from rxroute.runtime import Runtime
from tests import factories
from tests.staff_pages import csrf_for, sign_in

URL_ATTRIBUTES = re.compile(r'\b(?:href|action|src|formaction)="([^"]*)"')


@dataclass
class Case:
    support: User
    patient_user: User
    #: Ada Lovelace, born 1985-03-07, at Harbour Chemist (Bristol), issued, written in March.
    ada: Prescription
    #: Grace Hopper, born 1990-12-09, at Wellbeing Leeds, failed, written in June.
    grace: Prescription


@pytest.fixture
async def case(session: AsyncSession, db: Runtime) -> Case:
    ada_patient = await factories.make_patient(
        session,
        first_name="Ada",
        last_name="Lovelace",
        date_of_birth=date(1985, 3, 7),
        email="ada.lovelace@example.com",
    )
    grace_patient = await factories.make_patient(
        session,
        first_name="Grace",
        last_name="Hopper",
        date_of_birth=date(1990, 12, 9),
        email="grace.hopper@example.com",
    )
    patient_user = await factories.make_user(session, Role.PATIENT, patient=ada_patient)
    support = await factories.make_user(session, Role.SUPPORT)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    harbour = await factories.make_pharmacy(
        session, "B", name="Harbour Chemist", town="Bristol", postcode="BS1 4RN"
    )
    leeds = await factories.make_pharmacy(
        session, "B", name="Wellbeing Leeds", town="Leeds", postcode="LS1 5AB"
    )
    ada = await factories.make_prescription(
        session, ada_patient, prescriber, region="B", channel="erx", pharmacy_id=harbour.id
    )
    grace = await factories.make_prescription(
        session, grace_patient, prescriber, region="B", channel="erx", pharmacy_id=leeds.id
    )
    await factories.queue_delivery(session, ada.id, source=Source.PATIENT)
    await factories.observe_current(session, ada.id, Status.ISSUED, ref="SRXADA0000001")
    await factories.queue_delivery(session, grace.id, source=Source.PATIENT)
    await session.execute(
        text("UPDATE prescriptions SET status = 'failed' WHERE id = :id"), {"id": grace.id}
    )
    for prescription, written in (
        (ada, datetime(2026, 3, 15, 12, tzinfo=UTC)),
        (grace, datetime(2026, 6, 15, 12, tzinfo=UTC)),
    ):
        await session.execute(
            text("UPDATE prescriptions SET created_at = :at WHERE id = :id"),
            {"at": written, "id": prescription.id},
        )
    await session.commit()
    return Case(support, patient_user, ada, grace)


@pytest.fixture
async def as_support(client: httpx.AsyncClient, case: Case) -> httpx.AsyncClient:
    await sign_in(client, case.support)
    return client


async def _search(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    token = await csrf_for(client, "/support")
    return await client.post("/support/search", data={"csrf_token": token, **fields})


def _found(page: str, prescription: Prescription) -> bool:
    """Listed in the results (the needs-attention list below them is not searched)."""
    results = page[: page.index('id="needs-attention"')]
    return f'href="/support/prescriptions/{prescription.id}"' in results


@pytest.mark.parametrize(
    ("fields", "who"),
    [
        ({"name": "lovelace"}, "ada"),
        ({"name": "Ada Lovelace"}, "ada"),
        ({"name": "Lovelace, Ada"}, "ada"),
        ({"name": "hop"}, "grace"),
        ({"dob": "1990-12-09"}, "grace"),
        ({"q": "{ada_prefix}"}, "ada"),
        ({"q": "{grace_prefix_upper}"}, "grace"),
        ({"q": "{grace_reference}"}, "grace"),  # the short reference patient and pharmacy see
        ({"q": "srxada0000001"}, "ada"),
        ({"q": "GRACE.HOPPER@example.com"}, "grace"),
        ({"pharmacy": "harbour"}, "ada"),
        ({"pharmacy": "ls1 5ab"}, "grace"),
        ({"status": "failed"}, "grace"),
        ({"created_from": "2026-06-01"}, "grace"),
        ({"created_to": "2026-03-31"}, "ada"),
        ({"created_from": "2026-03-01", "created_to": "2026-03-31"}, "ada"),
        ({"name": "grace", "status": "failed", "pharmacy": "leeds"}, "grace"),
    ],
)
async def test_each_field_finds_its_prescription_and_not_the_other(
    as_support: httpx.AsyncClient, case: Case, fields: dict[str, str], who: str
) -> None:
    values = {
        key: value.format(
            ada_prefix=str(case.ada.id)[:8],
            grace_prefix_upper=str(case.grace.id)[:13].upper(),
            grace_reference=short_reference(case.grace.id),
        )
        for key, value in fields.items()
    }
    response = await _search(as_support, **values)
    assert response.status_code == 200, response.text
    wanted, other = (case.ada, case.grace) if who == "ada" else (case.grace, case.ada)
    assert _found(response.text, wanted)
    assert not _found(response.text, other)
    assert "1 found." in response.text
    for key, value in values.items():  # kept in the form, for the next search
        if key == "status":
            assert f'<option value="{value}" selected>' in response.text
        else:
            assert f'value="{value}"' in response.text


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "Ada", "dob": "1990-12-09"},  # both must match
        {"status": "dispensed"},
        {"pharmacy": "nowhere at all"},
        {"created_from": "2027-01-01"},
        {"q": "ffffffff"},
    ],
)
async def test_fields_combine_and_nothing_matches(
    as_support: httpx.AsyncClient, case: Case, fields: dict[str, str]
) -> None:
    response = await _search(as_support, **fields)
    assert response.status_code == 200
    assert "No prescription matches." in response.text
    assert not _found(response.text, case.ada) and not _found(response.text, case.grace)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"dob": "07/03/1985"}, "dob", "dob: give a date as YYYY-MM-DD"),
        ({"dob": "2999-01-01"}, "dob", "dob: a date of birth cannot be in the future"),
        ({"name": "al"}, "name", "name: give at least 3 letters"),
        ({"status": "lost"}, "status", "status: choose one from the list"),
        (
            {"created_from": "2026-06-01", "created_to": "2026-05-01"},
            "created_to",
            "created_to: must be on or after the start date",
        ),
        ({"q": "abc"}, "q", "q: Give rxroute"),
    ],
)
async def test_a_field_that_cannot_be_used_is_named(
    as_support: httpx.AsyncClient,
    case: Case,
    fields: dict[str, str],
    field: str,
    message: str,
) -> None:
    response = await _search(as_support, **fields)
    assert response.status_code == 422
    assert message in response.text
    assert f'href="#{field}"' in response.text  # the summary links to the field
    assert not _found(response.text, case.ada) and not _found(response.text, case.grace)


async def test_an_empty_search_asks_for_a_field(as_support: httpx.AsyncClient, case: Case) -> None:
    response = await _search(as_support)
    assert response.status_code == 200
    assert "Fill in at least one field" in response.text


async def test_typed_details_stay_out_of_urls_and_logs(
    as_support: httpx.AsyncClient, case: Case
) -> None:
    with capture_logs() as logs:
        response = await _search(as_support, name="Lovelace", dob="1985-03-07")
    assert _found(response.text, case.ada)
    for url in URL_ATTRIBUTES.findall(response.text):
        assert "Lovelace" not in url and "1985" not in url, url
    assert "Lovelace" not in repr(logs) and "1985-03-07" not in repr(logs)


async def test_a_patient_cannot_search(client: httpx.AsyncClient, case: Case) -> None:
    await sign_in(client, case.patient_user)
    token = await csrf_for(client, "/prescriptions")
    response = await client.post("/support/search", data={"csrf_token": token, "name": "Ada"})
    assert response.status_code == 403
    assert "Lovelace" not in response.text
