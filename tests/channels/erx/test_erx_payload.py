"""build_issue_payload: the contract's shape, and local refusals that name the field."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from erx_helpers import canonical_items, canonical_patient, canonical_payload, load
from hypothesis import given
from hypothesis import strategies as st

from rxroute.channels.erx.contract import IssuePayload
from rxroute.channels.erx.errors import LocalValidationError
from rxroute.channels.erx.payload import (
    MedicineItem,
    PatientDetails,
    build_issue_payload,
    normalise_phone,
    normalise_postcode,
    whole_quantity,
)


def build(patient: PatientDetails | None = None, **overrides: object) -> IssuePayload:
    args: dict[str, object] = {
        "patient": patient or canonical_patient(),
        "items": canonical_items(),
        "clinic_id": 994,
        "contact_id": 5001,
        "secure_pin": "123456",
        "client_ref_id": "rx-0001",
        "prescriber_ip": "203.0.113.7",
        "notes": "Synthetic test prescription",
        "today": date(2025, 1, 15),
    }
    args.update(overrides)
    return build_issue_payload(**args)  # type: ignore[arg-type]


def refused(patient: PatientDetails | None = None, **overrides: object) -> LocalValidationError:
    with pytest.raises(LocalValidationError) as info:
        build(patient, **overrides)
    return info.value


def test_payload_matches_the_recorded_body() -> None:
    expected = load("issue_request.json")["body"]
    expected["secure_pin"] = "123456"
    assert canonical_payload().to_wire() == expected


def test_contract_field_shapes() -> None:
    wire = build().to_wire()
    patient = wire["patient"]
    assert (patient["birth_day"], patient["birth_month"], patient["birth_year"]) == (
        "07",
        "03",
        "1985",
    )
    assert patient["phone"] == "447700900123"
    assert wire["action"] == "issueToContact"
    assert wire["medicines"][0]["VPID"] == "39954111000001109"
    assert "APID" not in wire["medicines"][0] and "vpid" not in wire["medicines"][0]
    assert "VPID" not in wire["medicines"][1]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("84 capsules", "84"),
        ("1 pen", "1"),
        (" 4 pens", "4"),
        ("100", "100"),
        ("007 x", "7"),
        ("pen", None),
        ("0 pens", None),
        ("2.5 ml", None),
        ("1/2 tablet", None),
        ("1,000", None),
        ("1234567 units", None),
    ],
)
def test_quantity_must_be_a_whole_number(raw: str, expected: str | None) -> None:
    assert whole_quantity(raw) == expected
    if expected is None:
        assert "medicines[0].qty" in refused(items=[MedicineItem("a", raw, "d")]).fields
    else:
        assert build(items=[MedicineItem("a", raw, "d")]).medicines[0].qty == expected


def test_optional_nhs_number_is_omitted() -> None:
    wire = build(dataclasses.replace(canonical_patient(), nhs_number=None)).to_wire()
    assert "nhs_number" not in wire["patient"]
    wire = build(dataclasses.replace(canonical_patient(), nhs_number="  ")).to_wire()
    assert "nhs_number" not in wire["patient"]
    wire = build(dataclasses.replace(canonical_patient(), nhs_number="999 000 0018")).to_wire()
    assert wire["patient"]["nhs_number"] == "9990000018"


@pytest.mark.parametrize(
    ("raw", "expected"), [("male", "Male"), ("FEMALE", "Female"), (" Other ", "Other")]
)
def test_gender_is_normalised(raw: str, expected: str) -> None:
    assert build(dataclasses.replace(canonical_patient(), gender=raw)).patient.gender == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+44 7700 900123", "GB", "447700900123"),
        ("07700 900123", "GB", "447700900123"),
        ("0044 (7700) 900-123", "GB", "447700900123"),
        ("447700900123", "GB", "447700900123"),
        ("07700 900123", "FR", None),
        ("+44 77", "GB", None),
        ("+44 7700 90012X", "GB", None),
        ("+0 7700 900123", "GB", None),
        ("", "GB", None),
    ],
)
def test_phone_normalisation(raw: str, country: str, expected: str | None) -> None:
    assert normalise_phone(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [("ls14ap", "GB", "LS1 4AP"), (" ls1   4ap ", "GB", "LS1 4AP"), ("d02 x285", "IE", "D02 X285")],
)
def test_postcode_normalisation(raw: str, country: str, expected: str) -> None:
    assert normalise_postcode(raw, country) == expected


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"postcode": ""}, "patient.post_code"),
        ({"postcode": "NOT A CODE"}, "patient.post_code"),
        ({"first_name": " "}, "patient.first_name"),
        ({"last_name": ""}, "patient.last_name"),
        ({"gender": "unknown"}, "patient.gender"),
        ({"gender": ""}, "patient.gender"),
        ({"email": "not-an-email"}, "patient.email"),
        ({"email": ""}, "patient.email"),
        ({"phone": "12"}, "patient.phone"),
        ({"phone": ""}, "patient.phone"),
        ({"date_of_birth": date(2030, 1, 1)}, "patient.birth_year"),
        ({"date_of_birth": date(1850, 1, 1)}, "patient.birth_year"),
        ({"date_of_birth": None}, "patient.birth_year"),
        ({"address_line1": ""}, "patient.address_ln1"),
        ({"town": ""}, "patient.city"),
        ({"country": ""}, "patient.country"),
        ({"nhs_number": "12345"}, "patient.nhs_number"),
    ],
)
def test_bad_patient_fields_are_named(change: dict[str, object], field: str) -> None:
    patient = dataclasses.replace(canonical_patient(), **change)  # type: ignore[arg-type]
    error = refused(patient)
    assert field in error.fields
    assert error.operation == "issue"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"items": []}, "medicines"),
        ({"secure_pin": "12345"}, "secure_pin"),
        ({"secure_pin": "1234567"}, "secure_pin"),
        ({"secure_pin": "12a456"}, "secure_pin"),
        ({"clinic_id": None}, "clinic_id"),
        ({"clinic_id": 0}, "clinic_id"),
        ({"contact_id": None}, "contact_id"),
        ({"client_ref_id": ""}, "client_ref_id"),
        ({"client_ref_id": "x" * 65}, "client_ref_id"),
        ({"prescriber_ip": "not-an-ip"}, "prescriber_ip"),
        ({"items": [MedicineItem("", "1", "d")]}, "medicines[0].description"),
        ({"items": [MedicineItem("a", "", "d")]}, "medicines[0].qty"),
        ({"items": [MedicineItem("a", "1", " ")]}, "medicines[0].directions"),
        ({"items": [MedicineItem("a", "1", "d", vpid="V1")]}, "medicines[0].VPID"),
        ({"items": [MedicineItem("a", "1", "d", apid="A-1")]}, "medicines[0].APID"),
    ],
)
def test_bad_prescription_fields_are_named(overrides: dict[str, object], field: str) -> None:
    assert field in refused(**overrides).fields


def test_clinic_error_explains_which_id() -> None:
    assert "internal API ID" in str(refused(clinic_id=None))


def test_all_problems_are_reported_at_once_without_values() -> None:
    patient = dataclasses.replace(canonical_patient(), postcode="", phone="12")
    error = refused(patient, items=[], secure_pin="1")
    assert set(error.fields) >= {"patient.post_code", "patient.phone", "medicines", "secure_pin"}
    assert error.field == error.fields[0]
    text = str(error) + repr(error.problems)
    for value in ("Jamie", "Testpatient", "patient@example.com", "Leeds", "12 Example Street"):
        assert value not in text


def test_reprs_carry_no_patient_data() -> None:
    payload = canonical_payload()
    text = repr(payload) + str(payload) + repr(payload.patient) + repr(canonical_patient())
    text += repr(payload.medicines[0]) + repr(canonical_items()[0])
    for value in ("Jamie", "Testpatient", "1985", "LS1 4AP", "9990000018", "Semaglutide", "123456"):
        assert value not in text


def test_direct_model_validation_hides_input() -> None:
    from pydantic import ValidationError

    data = canonical_payload().to_wire()
    data["patient"]["phone"] = "+44 secret-ish"
    with pytest.raises(ValidationError) as info:
        IssuePayload.model_validate(data)
    assert "secret-ish" not in str(info.value)


@given(st.from_regex(r"\A[0-9]{6}\Z"))
def test_any_six_digit_pin_is_accepted(pin: str) -> None:
    assert build(secure_pin=pin).secure_pin == pin


@given(st.text(max_size=10).filter(lambda s: not (len(s) == 6 and s.isascii() and s.isdigit())))
def test_anything_else_is_refused_as_a_pin(pin: str) -> None:
    assert "secure_pin" in refused(secure_pin=pin).fields
