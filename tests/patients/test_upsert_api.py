"""``PUT /api/v1/patients/{external_id}``: create (201), replace (200), every refused field."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from rxroute.apiclients.scopes import Scope
from rxroute.apiclients.service import revoke_client
from rxroute.models import Patient, Prescription, Role
from rxroute.runtime import Runtime
from tests.apiclients.helpers import bearer, make_api_key
from tests.auth.helpers import session_token
from tests.factories import make_prescriber, make_user
from tests.patients.helpers import BAD_CHECK_DIGIT, NHS_NUMBER, patient_body

URL = "/api/v1/patients/{}"


@pytest.fixture
async def key(session: AsyncSession) -> str:
    return await make_api_key(session, Scope.PATIENTS_WRITE)


async def _put(client: httpx.AsyncClient, key: str, external_id: str, body: Any) -> httpx.Response:
    return await client.put(URL.format(external_id), json=body, headers=bearer(key))


async def test_a_new_patient_is_created_as_stored(
    client: httpx.AsyncClient, key: str, session: AsyncSession
) -> None:
    response = await _put(client, key, "pt-1001", patient_body())
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["external_id"] == "pt-1001"
    assert out["given_name"] == "Alex" and out["family_name"] == "Testperson"
    assert out["gender"] == "female"
    assert out["date_of_birth"] == "1985-03-07"
    assert out["phone"] == "+447700900123"
    assert out["address"] == {
        "line1": "1 Example Street",
        "line2": "Flat 2",
        "city": "Leeds",
        "postcode": "LS1 4AP",
        "country": "GB",
    }
    assert out["nhs_number"] == NHS_NUMBER and out["region"] == "B"

    stored = await session.scalar(select(Patient).where(Patient.external_id == "pt-1001"))
    assert stored is not None and str(stored.id) == out["id"]
    # The columns' own words: the gender as the Region B platform spells it.
    assert (stored.first_name, stored.last_name, stored.gender) == ("Alex", "Testperson", "Female")
    assert (stored.town, stored.postcode, stored.address_line2) == ("Leeds", "LS1 4AP", "Flat 2")


async def test_a_second_put_replaces_the_details_and_keeps_the_id(
    client: httpx.AsyncClient, key: str, session: AsyncSession
) -> None:
    first = (await _put(client, key, "pt-1002", patient_body())).json()
    second = await _put(
        client,
        key,
        "pt-1002",
        {
            k: v
            for k, v in patient_body(family_name="Renamed", gender="other").items()
            if k not in ("nhs_number", "region")
        },
    )
    assert second.status_code == 200, second.text
    out = second.json()
    assert out["id"] == first["id"]
    assert out["family_name"] == "Renamed" and out["gender"] == "other"
    # Omitted optional fields keep what is stored.
    assert out["nhs_number"] == NHS_NUMBER and out["region"] == "B"

    cleared = await _put(client, key, "pt-1002", patient_body(nhs_number=None, region="A"))
    assert cleared.status_code == 200
    assert cleared.json()["nhs_number"] is None and cleared.json()["region"] == "A"
    assert await session.scalar(select(func.count()).select_from(Patient)) == 1


async def test_without_a_region_the_patient_has_none_yet(
    client: httpx.AsyncClient, key: str
) -> None:
    body = patient_body()
    del body["region"], body["nhs_number"]
    response = await _put(client, key, "pt-1003", body)
    assert response.status_code == 201, response.text
    assert response.json()["region"] is None and response.json()["nhs_number"] is None


TOMORROW = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"email": "alex.testperson-at-example.com"}, "email", "not a valid address"),
        ({"email": "alex@"}, "email", "not a valid address"),
        ({"date_of_birth": "07/03/1985"}, "date_of_birth", "YYYY-MM-DD"),
        ({"date_of_birth": "1985-02-30"}, "date_of_birth", "date"),
        ({"date_of_birth": TOMORROW}, "date_of_birth", "future"),
        ({"date_of_birth": "1850-01-01"}, "date_of_birth", "1900"),
        ({"date_of_birth": 486950400}, "date_of_birth", "YYYY-MM-DD"),
        ({"gender": "Female"}, "gender", "female"),
        ({"gender": "unknown"}, "gender", "female"),
        ({"phone": "7700 900123 ext"}, "phone", "country code"),
        ({"phone": "12"}, "phone", "country code"),
        ({"address__postcode": "QQ 12345"}, "address.postcode", "UK postcode"),
        ({"address__country": "XX"}, "address.country", "ISO 3166-1"),
        ({"address__country": "UK"}, "address.country", "GB"),
        ({"address__line1": " "}, "address.line1", "at least 1"),
        ({"address__city": "Le\neds"}, "address.city", "control characters"),
        ({"nhs_number": BAD_CHECK_DIGIT}, "nhs_number", "check digit"),
        ({"nhs_number": "99900000"}, "nhs_number", "10 digits"),
        ({"given_name": ""}, "given_name", "at least 1"),
        ({"family_name": "x" * 101}, "family_name", "at most 100"),
        ({"region": "Z"}, "region", "not a region"),
        ({"nickname": "Al"}, "nickname", "not permitted"),
    ],
)
async def test_each_refused_field_is_named_and_its_value_never_repeated(
    client: httpx.AsyncClient,
    key: str,
    session: AsyncSession,
    changes: dict[str, Any],
    field: str,
    message: str,
) -> None:
    with capture_logs() as logs:
        response = await _put(client, key, "pt-2001", patient_body(**changes))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [error["field"] for error in errors] == [field]
    assert message in errors[0]["message"]
    assert response.json()["detail"].startswith(("invalid request: ", f"{field}: "))
    for value in changes.values():
        if isinstance(value, str) and len(value) > 2:
            assert value not in response.text
            assert value not in repr(logs)
    assert await session.scalar(select(func.count()).select_from(Patient)) == 0


@pytest.mark.parametrize("missing", ["gender", "email", "date_of_birth", "address", "phone"])
async def test_required_fields(client: httpx.AsyncClient, key: str, missing: str) -> None:
    body = patient_body()
    del body[missing]
    response = await _put(client, key, "pt-2002", body)
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == [missing]


async def test_a_national_phone_number_is_read_in_the_address_country(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await _put(client, key, "pt-2003", patient_body(phone="07700 900123"))
    assert response.status_code == 201, response.text
    assert response.json()["phone"] == "+447700900123"
    abroad = await _put(
        client,
        key,
        "pt-2004",
        patient_body(phone="07700 900123", address__country="FR", address__postcode="75001"),
    )
    assert abroad.status_code == 422
    assert [e["field"] for e in abroad.json()["errors"]] == ["phone"]


@pytest.mark.parametrize("external_id", ["x" * 201, " leading-space", "bell%07", "tab%09id"])
async def test_the_external_id_must_be_1_to_200_printable_characters(
    client: httpx.AsyncClient, key: str, external_id: str
) -> None:
    response = await _put(client, key, external_id, patient_body())
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["external_id"]
    ok = await _put(client, key, "x" * 200, patient_body())
    assert ok.status_code in (200, 201), ok.text


async def test_keys_need_the_patients_write_scope(
    client: httpx.AsyncClient, session: AsyncSession, runtime: Runtime
) -> None:
    body = patient_body()
    assert (await client.put(URL.format("pt-3001"), json=body)).status_code == 401

    reader = await make_api_key(session, Scope.PRESCRIPTIONS_READ, Scope.PRESCRIPTIONS_WRITE)
    refused = await client.put(URL.format("pt-3001"), json=body, headers=bearer(reader))
    assert refused.status_code == 403 and "patients:write" in refused.json()["detail"]

    admin = await make_user(session, Role.ADMIN)
    await session.commit()
    signed_in = {"Authorization": f"Bearer {await session_token(runtime, admin.id)}"}
    as_admin = await client.put(URL.format("pt-3001"), json=body, headers=signed_in)
    assert as_admin.status_code == 401

    revoked = await make_api_key(session, Scope.PATIENTS_WRITE, name="revoked-platform")
    await revoke_client(session, "revoked-platform")
    await session.commit()
    gone = await client.put(URL.format("pt-3001"), json=body, headers=bearer(revoked))
    assert gone.status_code == 401
    assert await session.scalar(select(func.count()).select_from(Patient)) == 0


async def test_concurrent_first_puts_make_one_patient(
    client: httpx.AsyncClient, key: str, session: AsyncSession
) -> None:
    responses = await asyncio.gather(
        *(_put(client, key, "pt-4001", patient_body(family_name=f"Try{i}")) for i in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await session.scalar(select(func.count()).select_from(Patient)) == 1


async def test_changing_a_patient_keeps_their_prescriptions(
    client: httpx.AsyncClient, key: str, session: AsyncSession, runtime: Runtime
) -> None:
    created = (await _put(client, key, "pt-5001", patient_body())).json()
    prescriber = await make_prescriber(session, runtime.secret_box)
    await session.commit()
    writer = await make_api_key(session, Scope.PRESCRIPTIONS_WRITE)
    written = await client.post(
        "/api/v1/prescriptions",
        json={
            "patient_external_id": "pt-5001",
            "prescriber_id": str(prescriber.id),
            "items": [{"description": "Pen", "quantity": "1 pen", "directions": "Weekly"}],
        },
        headers={**bearer(writer), "Idempotency-Key": "pt-5001-rx-1"},
    )
    assert written.status_code == 201, written.text
    assert written.json()["region"] == "B"

    moved = await _put(
        client, key, "pt-5001", patient_body(region="A", family_name="Moved", address__city="Perth")
    )
    assert moved.status_code == 200 and moved.json()["id"] == created["id"]

    prescription = await session.get(Prescription, written.json()["id"])
    assert prescription is not None
    assert str(prescription.patient_id) == created["id"]
    assert prescription.region == "B"  # written for region B; the patient's move does not
    user = await make_user(session, Role.PATIENT, patient=await session.get(Patient, created["id"]))
    await session.commit()
    mine = await client.get(
        f"/api/v1/prescriptions/{prescription.id}",
        headers={"Authorization": f"Bearer {await session_token(runtime, user.id)}"},
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["status"] == "draft"
