"""Build the issue payload from plain values, refusing locally what the platform would refuse.

A prescription token cannot be reset (case study, "Testing with limited resources"), and the
platform's own errors are vague, so every problem we can see before sending is reported
here, naming the contract field, and nothing is sent. Inputs are plain dataclasses so this
module stays independent of the database; the caller adapts its rows.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from pydantic import ValidationError

from rxroute.channels.erx.contract import (
    Gender,
    IssuePayload,
    MedicinePayload,
    PatientPayload,
)
from rxroute.channels.erx.errors import FieldProblem, LocalValidationError
from rxroute.emails import normalise_email


@dataclass(frozen=True)
class PatientDetails:
    first_name: str = field(repr=False)
    last_name: str = field(repr=False)
    date_of_birth: date = field(repr=False)
    #: ``Male``, ``Female`` or ``Other``, any letter case.
    gender: str = field(repr=False)
    email: str = field(repr=False)
    #: As people type it: ``+44 7700 900123``, ``07700 900123`` (with country GB), ...
    phone: str = field(repr=False)
    address_line1: str = field(repr=False)
    address_line2: str = field(repr=False)
    town: str = field(repr=False)
    postcode: str = field(repr=False)
    #: ISO 3166 alpha-2, e.g. ``GB``.
    country: str = field(repr=False)
    nhs_number: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MedicineItem:
    description: str = field(repr=False)
    quantity: str = field(repr=False)
    directions: str = field(repr=False)
    vpid: str | None = None
    apid: str | None = None


#: National trunk prefix -> country calling code, for numbers typed without one.
_CALLING_CODES = {"GB": "44", "UK": "44", "IE": "353"}
_GENDERS: dict[str, Gender] = {"male": "Male", "female": "Female", "other": "Other"}
_UK_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$")
_PIN = re.compile(r"^[0-9]{6}$")
_DIGITS = re.compile(r"^[0-9]+$")
_QUANTITY = re.compile(r"^\s*([0-9]+)(?![0-9.,/])")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def normalise_phone(raw: str, country: str) -> str | None:
    """Digits with country code and no ``+``, or ``None`` when we cannot tell the country code.

    We never guess a country code for a national number from an unknown country: a wrong
    number on a prescription is worse than a refusal.
    """
    compact = _PHONE_SEPARATORS.sub("", raw.strip())
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    elif compact.startswith("0"):
        code = _CALLING_CODES.get(country.strip().upper())
        if code is None:
            return None
        digits = code + compact[1:]
    else:
        digits = compact
    if not _DIGITS.match(digits) or not 8 <= len(digits) <= 15 or digits.startswith("0"):
        return None
    return digits


def whole_quantity(raw: str) -> str | None:
    """The leading whole number of a quantity as people write it ("84 capsules" -> "84").

    The platform wants a number; the unit is already in the item's description.
    """
    match = _QUANTITY.match(raw)
    if match is None or int(match.group(1)) == 0 or len(match.group(1)) > 6:
        return None
    return str(int(match.group(1)))


def normalise_postcode(raw: str, country: str) -> str:
    """Upper case, single spaces; UK postcodes get their one space before the inward code."""
    text = " ".join(raw.upper().split())
    if country.strip().upper() in {"GB", "UK"}:
        compact = text.replace(" ", "")
        if len(compact) >= 5:
            text = f"{compact[:-3]} {compact[-3:]}"
    return text


def build_issue_payload(
    *,
    patient: PatientDetails,
    items: Sequence[MedicineItem],
    clinic_id: int | None,
    contact_id: int | None,
    secure_pin: str,
    client_ref_id: str,
    prescriber_ip: str,
    notes: str = "",
    notify: bool = True,
    today: date | None = None,
) -> IssuePayload:
    """The ``issueToContact`` payload, or :class:`LocalValidationError` naming every bad field.

    ``today`` is injectable so date-of-birth checks are testable.
    """
    problems: list[FieldProblem] = []

    def need(value: str, name: str) -> str:
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            problems.append(FieldProblem(name, "is required"))
        return text

    if clinic_id is None or clinic_id <= 0:
        problems.append(
            FieldProblem(
                "clinic_id",
                "no clinic configured: set RXROUTE_ERX_CLINIC_ID to the clinic's internal API "
                "ID (not the dashboard display ID)",
            )
        )
    if contact_id is None or contact_id <= 0:
        problems.append(
            FieldProblem("contact_id", "the pharmacy has no platform contact (branch) ID")
        )
    if not isinstance(secure_pin, str) or not _PIN.match(secure_pin):
        problems.append(FieldProblem("secure_pin", "the prescriber's PIN must be 6 digits"))
    ref = need(client_ref_id, "client_ref_id")
    if len(ref) > 64:
        problems.append(FieldProblem("client_ref_id", "must be at most 64 characters"))
    try:
        ipaddress.ip_address(prescriber_ip.strip())
    except ValueError:
        problems.append(FieldProblem("prescriber_ip", "must be an IPv4 or IPv6 address"))

    first_name = need(patient.first_name, "patient.first_name")
    last_name = need(patient.last_name, "patient.last_name")
    gender = _GENDERS.get(patient.gender.strip().lower()) if patient.gender else None
    if gender is None:
        problems.append(FieldProblem("patient.gender", "must be Male, Female or Other"))
    email = need(patient.email, "patient.email")
    if email and normalise_email(email) is None:
        problems.append(FieldProblem("patient.email", "is not an email address"))
    country = need(patient.country, "patient.country").upper()
    phone = None
    if need(patient.phone, "patient.phone"):
        phone = normalise_phone(patient.phone, country)
        if phone is None:
            problems.append(
                FieldProblem(
                    "patient.phone",
                    "must be a full number with country code (e.g. +44 7700 900123)",
                )
            )
    dob = patient.date_of_birth
    reference_day = today or date.today()
    if not isinstance(dob, date):
        problems.append(FieldProblem("patient.birth_year", "date of birth is required"))
    elif dob > reference_day or dob.year < 1900:
        problems.append(FieldProblem("patient.birth_year", "date of birth is not plausible"))
    address_ln1 = need(patient.address_line1, "patient.address_ln1")
    city = need(patient.town, "patient.city")
    post_code = ""
    if need(patient.postcode, "patient.post_code"):
        post_code = normalise_postcode(patient.postcode, country)
        if country in {"GB", "UK"} and not _UK_POSTCODE.match(post_code):
            problems.append(FieldProblem("patient.post_code", "is not a UK postcode"))
    nhs_number = None
    if patient.nhs_number is not None and patient.nhs_number.strip():
        nhs_number = patient.nhs_number.replace(" ", "").replace("-", "")
        if not (len(nhs_number) == 10 and _DIGITS.match(nhs_number)):
            problems.append(FieldProblem("patient.nhs_number", "must be 10 digits"))

    if not items:
        problems.append(FieldProblem("medicines", "the prescription has no items"))
    for index, item in enumerate(items):
        where = f"medicines[{index}]"
        need(item.description, f"{where}.description")
        if need(item.quantity, f"{where}.qty") and whole_quantity(item.quantity) is None:
            problems.append(
                FieldProblem(f"{where}.qty", "must start with a whole number, e.g. '84 capsules'")
            )
        need(item.directions, f"{where}.directions")
        for code_name, code in (("VPID", item.vpid), ("APID", item.apid)):
            if code is not None and code.strip() and not _DIGITS.match(code.strip()):
                problems.append(FieldProblem(f"{where}.{code_name}", "must be a dm+d code"))

    if problems:
        raise LocalValidationError(problems, operation="issue")

    assert isinstance(dob, date) and gender is not None and phone is not None
    try:
        return IssuePayload(
            clinic_id=clinic_id,
            contact_id=contact_id,
            secure_pin=secure_pin,
            prescriber_ip=prescriber_ip.strip(),
            notify=notify,
            client_ref_id=ref,
            notes=notes.strip(),
            patient=PatientPayload(
                first_name=first_name,
                last_name=last_name,
                gender=gender,
                email=email,
                phone=phone,
                birth_day=f"{dob.day:02d}",
                birth_month=f"{dob.month:02d}",
                birth_year=f"{dob.year:04d}",
                address_ln1=address_ln1,
                address_ln2=patient.address_line2.strip() if patient.address_line2 else "",
                city=city,
                post_code=post_code,
                country=country,
                nhs_number=nhs_number,
            ),
            medicines=[
                MedicinePayload(
                    description=item.description.strip(),
                    qty=whole_quantity(item.quantity) or "",
                    directions=item.directions.strip(),
                    vpid=item.vpid.strip() if item.vpid and item.vpid.strip() else None,
                    apid=item.apid.strip() if item.apid and item.apid.strip() else None,
                )
                for item in items
            ],
        )
    except ValidationError as exc:
        # Anything the checks above missed: report the field paths only (inputs are hidden).
        found = [
            FieldProblem(".".join(str(part) for part in error["loc"]), error["msg"])
            for error in exc.errors(include_input=False, include_url=False)
        ]
        raise LocalValidationError(found, operation="issue") from None
