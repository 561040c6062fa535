"""Issuing, looking up and voiding, with the platform's odd but documented behaviours."""

from __future__ import annotations

import re

import httpx
import pytest

from .conftest import CAROL, issue, issue_payload, login

UNAUTHORIZED = "You trying to issue prescription to unauthorized clinic."


async def test_clinics_and_contacts_shapes(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    clinics = (await client.get("/api/v1/clinics", headers=headers)).json()
    assert clinics["success"] is True
    assert {"id": 994, "unique_id": "201334", "name": "rxroute Demo Weight Clinic"} in clinics[
        "data"
    ]["clinics"]
    contacts = (await client.get("/api/v1/contacts", headers=headers)).json()
    assert contacts["success"] is True
    first = contacts["data"]["contacts"][0]
    assert set(first) == {"id", "name", "email", "post_code"}
    assert any(c["id"] == 5012 for c in contacts["data"]["contacts"])


async def test_issue_success_is_nested(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    body = await issue(client, headers)
    assert body["message"] == "Prescription issued."
    assert set(body) == {"success", "message", "data"}
    assert set(body["data"]) == {"prescription"}
    prescription = body["data"]["prescription"]
    assert re.fullmatch(r"SRX[0-9A-F]{12}", prescription["id"])
    assert prescription["status"] == "issued"
    assert prescription["client_ref_id"] == "rx-0001"
    assert prescription["token"]


async def test_display_clinic_id_is_unauthorized_in_http_200(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    for clinic_id in (201334, "201334"):
        response = await client.post(
            "/api/v1/prescriptions", headers=headers, json=issue_payload(clinic_id=clinic_id)
        )
        assert response.status_code == 200
        assert response.json() == {"success": False, "message": UNAUTHORIZED}


async def test_clinic_the_prescriber_may_not_issue_for(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    response = await client.post(
        "/api/v1/prescriptions", headers=headers, json=issue_payload(clinic_id=995)
    )
    assert response.status_code == 200
    assert response.json() == {"success": False, "message": UNAUTHORIZED}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"contact_id": 999999}, "The selected contact is invalid."),
        ({"secure_pin": "000000"}, "Invalid secure pin."),
    ],
)
async def test_business_errors_are_http_200(
    client: httpx.AsyncClient, overrides: dict[str, object], message: str
) -> None:
    headers = await login(client)
    response = await client.post(
        "/api/v1/prescriptions", headers=headers, json=issue_payload(**overrides)
    )
    assert response.status_code == 200
    assert response.json() == {"success": False, "message": message}


async def test_inactive_prescriber_cannot_issue(client: httpx.AsyncClient) -> None:
    headers = await login(client, CAROL)
    response = await client.post(
        "/api/v1/prescriptions", headers=headers, json=issue_payload(secure_pin=CAROL[2])
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False
    assert "inactive" in body["message"]


async def test_validation_errors_are_422_keyed_by_path(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    payload = issue_payload()
    payload["patient"]["post_code"] = "not a postcode"
    payload["patient"]["phone"] = "+447700900123"
    payload["patient"]["gender"] = "F"
    payload["medicines"][0]["qty"] = 0
    del payload["patient"]["last_name"]
    response = await client.post("/api/v1/prescriptions", headers=headers, json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert body["message"] == "The given data was invalid."
    for key in (
        "patient.post_code",
        "patient.phone",
        "patient.gender",
        "patient.last_name",
        "medicines.0.qty",
    ):
        assert key in body["errors"], key
        assert all(isinstance(m, str) for m in body["errors"][key])


async def test_validation_of_top_level_fields(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    response = await client.post(
        "/api/v1/prescriptions",
        headers=headers,
        json=issue_payload(action="issue", medicines=[], client_ref_id=""),
    )
    assert response.status_code == 422
    assert {"action", "medicines", "client_ref_id"} <= set(response.json()["errors"])


async def test_no_dedupe_and_lookup_by_client_ref(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    first = (await issue(client, headers, client_ref_id="dup-1"))["data"]["prescription"]["id"]
    second = (await issue(client, headers, client_ref_id="dup-1"))["data"]["prescription"]["id"]
    assert first != second
    found = await client.get(
        "/api/v1/prescriptions", headers=headers, params={"client_ref_id": "dup-1"}
    )
    assert found.status_code == 200
    ids = {p["id"] for p in found.json()["data"]["prescriptions"]}
    assert ids == {first, second}
    none = await client.get(
        "/api/v1/prescriptions", headers=headers, params={"client_ref_id": "nope"}
    )
    assert none.json() == {"success": True, "data": {"prescriptions": []}}
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["issued_by_client_ref_id"] == {"dup-1": 2}
    assert stats["prescriptions_issued"] == 2


async def test_get_one_and_unknown_id(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    rx_id = (await issue(client, headers))["data"]["prescription"]["id"]
    response = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers)
    assert response.status_code == 200
    assert response.json()["data"]["prescription"]["id"] == rx_id
    missing = await client.get("/api/v1/prescriptions/SRX000000000000", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "message": "Prescription not found."}


async def test_void_and_void_after_dispense(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    rx_id = (await issue(client, headers))["data"]["prescription"]["id"]
    voided = await client.post(f"/api/v1/prescriptions/{rx_id}/void", headers=headers)
    assert voided.json()["success"] is True
    assert voided.json()["data"]["prescription"]["status"] == "voided"
    again = await client.post(f"/api/v1/prescriptions/{rx_id}/void", headers=headers)
    assert again.status_code == 200 and again.json()["success"] is False

    other = (await issue(client, headers))["data"]["prescription"]["id"]
    await client.get("/_sandbox/stats")  # any request lets the sandbox sign what is due
    dispensed = await client.post(f"/_sandbox/prescriptions/{other}/dispense")
    assert dispensed.json()["data"]["prescription"]["status"] == "dispensed"
    refused = await client.post(f"/api/v1/prescriptions/{other}/void", headers=headers)
    assert refused.status_code == 200
    assert refused.json() == {"success": False, "message": "Prescription already dispensed."}
    missing = await client.post("/api/v1/prescriptions/SRXFFFFFFFFFFFF/void", headers=headers)
    assert missing.status_code == 404
