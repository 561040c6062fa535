"""From the Region B platform's answers to rxroute's types, and the rules for its identifiers.

Case study lesson 4: the prescription ID lives only at ``data.prescription.id``, so an answer
is validated against :mod:`.contract`'s response models by :func:`parse`, and a missing field
is a typed error naming its path, never a default. Lesson 2: a clinic has an internal ID (the
API's) and a display ID (the dashboard's); :func:`clinic_hint_from` tells a person which one
to configure. Prescription IDs go into URL paths, so :func:`checked_id` refuses anything
that does not look like one rather than escaping it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rxroute.channels.erx import contract as c
from rxroute.channels.erx.base import Clinic, RemotePrescription
from rxroute.channels.erx.errors import FieldProblem, LocalValidationError, UnexpectedResponseError

_Model = TypeVar("_Model", bound=BaseModel)

#: Prescription IDs go into URL paths; anything else is refused rather than escaped.
_PRESCRIPTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse(
    body: Mapping[str, Any],
    model: type[_Model],
    operation: str,
    *,
    ambiguous: bool,
    root: bool = False,
) -> _Model:
    """Validate the part we rely on; a missing field is an error naming its path, never a
    default (a 200 with a top-level ``id`` but no ``data.prescription.id`` is not a success).
    """
    target = body if root else body.get(c.FIELD_DATA)
    try:
        return model.model_validate(target)
    except ValidationError as exc:
        prefix = "" if root else f"{c.FIELD_DATA}."
        where = ", ".join(
            prefix + ".".join(str(p) for p in e["loc"]) if e["loc"] else prefix.rstrip(".")
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise UnexpectedResponseError(
            f"{operation}: response lacks or mangles {where or 'data'}",
            ambiguous=ambiguous,
            operation=operation,
        ) from None


def checked_id(prescription_id: str) -> str:
    if not _PRESCRIPTION_ID.match(prescription_id or ""):
        raise LocalValidationError(
            [FieldProblem("prescription_id", "is not a platform prescription ID")]
        )
    return prescription_id


def remote(record: c.PrescriptionRecord, raw: Any) -> RemotePrescription:
    return RemotePrescription(
        provider_id=record.id,
        status=record.status,
        client_ref_id=record.client_ref_id,
        token=record.token,
        contact_id=record.contact_id,
        raw=raw if isinstance(raw, Mapping) else {},
    )


def clinic_hint_from(clinic_id: int, clinics: Sequence[Clinic]) -> str | None:
    for clinic in clinics:
        if clinic.display_id == str(clinic_id) and clinic.internal_id != clinic_id:
            return (
                f"clinic {clinic_id} is the dashboard display ID; configure the internal ID "
                f"{clinic.internal_id} (RXROUTE_ERX_CLINIC_ID)"
            )
    for clinic in clinics:
        if clinic.internal_id == clinic_id:
            return (
                f"clinic {clinic_id} is a known internal ID, but this prescriber may not issue "
                "for it; check the prescriber's clinics on the platform"
            )
    if clinics:
        known = ", ".join(f"{k.internal_id} (display {k.display_id})" for k in clinics)
        return f"clinic {clinic_id} is not one of the prescriber's clinics; internal IDs: {known}"
    return None


def generic_clinic_hint(clinic_id: int) -> str:
    return (
        f"clinic {clinic_id} was refused: RXROUTE_ERX_CLINIC_ID must be the clinic's internal "
        "API ID, not the display ID shown on the dashboard; list_clinics shows both"
    )
