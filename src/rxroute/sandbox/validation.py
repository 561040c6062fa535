"""Validation of an issue request, in the platform's style.

The real platform reports field errors Laravel-style, keyed by dotted path
(``patient.post_code``, ``medicines.0.qty``) with a list of sentences each, so the client's
error mapping is tested against that shape rather than against pydantic's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any

Errors = dict[str, list[str]]

_POST_CODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$", re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^[0-9]{10,15}$")
_NHS = re.compile(r"^[0-9]{10}$")
_GENDERS = ("Male", "Female", "Other")

_PATIENT_REQUIRED = (
    "first_name",
    "last_name",
    "gender",
    "email",
    "phone",
    "birth_day",
    "birth_month",
    "birth_year",
    "address_ln1",
    "city",
    "post_code",
    "country",
)
_PATIENT_OPTIONAL = ("address_ln2", "nhs_number")
_MEDICINE_REQUIRED = ("description", "qty", "directions")
_MEDICINE_OPTIONAL = ("VPID", "APID")
_MAX_STRING = 255


def _add(errors: Errors, key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


def _string(errors: Errors, data: dict[str, Any], key: str, path: str, *, required: bool) -> str:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            _add(errors, path, f"The {path} field is required.")
        return ""
    if not isinstance(value, str):
        _add(errors, path, f"The {path} must be a string.")
        return ""
    if len(value) > _MAX_STRING:
        _add(errors, path, f"The {path} may not be greater than {_MAX_STRING} characters.")
    return value


def _patient(errors: Errors, patient: Any) -> None:
    if not isinstance(patient, dict):
        _add(errors, "patient", "The patient field is required and must be an object.")
        return
    fields: dict[str, str] = {}
    for key in _PATIENT_REQUIRED:
        fields[key] = _string(errors, patient, key, f"patient.{key}", required=True)
    for key in _PATIENT_OPTIONAL:
        fields[key] = _string(errors, patient, key, f"patient.{key}", required=False)
    if fields["gender"] and fields["gender"] not in _GENDERS:
        _add(errors, "patient.gender", "The selected patient.gender is invalid.")
    if fields["email"] and not _EMAIL.match(fields["email"]):
        _add(errors, "patient.email", "The patient.email must be a valid email address.")
    if fields["phone"] and not _PHONE.match(fields["phone"]):
        _add(
            errors,
            "patient.phone",
            "The patient.phone must be 10 to 15 digits with the country code and no '+'.",
        )
    if fields["post_code"] and not _POST_CODE.match(fields["post_code"].strip()):
        _add(errors, "patient.post_code", "The patient.post_code format is invalid.")
    if fields["nhs_number"] and not _NHS.match(fields["nhs_number"]):
        _add(errors, "patient.nhs_number", "The patient.nhs_number must be 10 digits.")
    _birth_date(errors, fields["birth_day"], fields["birth_month"], fields["birth_year"])


def _birth_date(errors: Errors, day: str, month: str, year: str) -> None:
    parts_ok = True
    for name, value, width in (("day", day, 2), ("month", month, 2), ("year", year, 4)):
        if value and not (value.isdigit() and value.isascii() and len(value) == width):
            _add(
                errors, f"patient.birth_{name}", f"The patient.birth_{name} must be {width} digits."
            )
            parts_ok = False
    if not (parts_ok and day and month and year):
        return
    try:
        born = dt.date(int(year), int(month), int(day))
    except ValueError:
        _add(errors, "patient.birth_day", "The patient date of birth is not a valid date.")
        return
    today = dt.datetime.now(dt.UTC).date()
    if born > today or born.year < today.year - 130:
        _add(errors, "patient.birth_year", "The patient date of birth is out of range.")


def _medicines(errors: Errors, medicines: Any) -> None:
    if not isinstance(medicines, list) or not medicines:
        _add(
            errors, "medicines", "The medicines field is required and must list at least one item."
        )
        return
    if len(medicines) > 50:
        _add(errors, "medicines", "The medicines may not have more than 50 items.")
        return
    for index, medicine in enumerate(medicines):
        path = f"medicines.{index}"
        if not isinstance(medicine, dict):
            _add(errors, path, f"The {path} must be an object.")
            continue
        for key in ("description", "directions"):
            _string(errors, medicine, key, f"{path}.{key}", required=True)
        for key in _MEDICINE_OPTIONAL:
            _string(errors, medicine, key, f"{path}.{key}", required=False)
        qty = medicine.get("qty")
        if qty is None or qty == "":
            _add(errors, f"{path}.qty", f"The {path}.qty field is required.")
        elif isinstance(qty, bool) or not (
            (isinstance(qty, int) and qty > 0)
            or (isinstance(qty, str) and qty.isdigit() and qty.isascii() and int(qty) > 0)
        ):
            _add(errors, f"{path}.qty", f"The {path}.qty must be a positive whole number.")


def _integer(errors: Errors, data: dict[str, Any], key: str) -> None:
    value = data.get(key)
    if value is None:
        _add(errors, key, f"The {key} field is required.")
    elif isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.isdigit() and value.isascii())
    ):
        _add(errors, key, f"The {key} must be an integer.")


def validate_issue(payload: dict[str, Any]) -> Errors:
    """All field errors of an issue request at once, as the platform lists them."""
    errors: Errors = {}
    action = payload.get("action")
    if action is None:
        _add(errors, "action", "The action field is required.")
    elif action != "issueToContact":
        _add(errors, "action", "The selected action is invalid.")
    _integer(errors, payload, "clinic_id")
    _integer(errors, payload, "contact_id")
    _string(errors, payload, "secure_pin", "secure_pin", required=True)
    ip = _string(errors, payload, "prescriber_ip", "prescriber_ip", required=True)
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            _add(errors, "prescriber_ip", "The prescriber_ip must be a valid IP address.")
    notify = payload.get("notify")
    if notify is not None and not isinstance(notify, bool):
        _add(errors, "notify", "The notify field must be true or false.")
    _string(errors, payload, "client_ref_id", "client_ref_id", required=True)
    notes = payload.get("notes")
    if notes is not None and not isinstance(notes, str):
        _add(errors, "notes", "The notes must be a string.")
    elif isinstance(notes, str) and len(notes) > 2000:
        _add(errors, "notes", "The notes may not be greater than 2000 characters.")
    _patient(errors, payload.get("patient"))
    _medicines(errors, payload.get("medicines"))
    return errors
