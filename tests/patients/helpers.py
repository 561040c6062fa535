"""A synthetic patient as an integrating platform sends it (``PUT /api/v1/patients/{id}``)."""

from __future__ import annotations

import copy
from typing import Any

#: 999 000 001 with its mod-11 check digit: 9*10 + 9*9 + 9*8 + 1*2 = 245; 11 - 245 % 11 = 8.
NHS_NUMBER = "9990000018"
#: The same number with a wrong check digit.
BAD_CHECK_DIGIT = "9990000017"

BODY: dict[str, Any] = {
    "given_name": "Alex",
    "family_name": "Testperson",
    "date_of_birth": "1985-03-07",
    "gender": "female",
    "email": "alex.testperson@example.com",
    "phone": "+44 7700 900123",
    "address": {
        "line1": "1 Example Street",
        "line2": "Flat 2",
        "city": "Leeds",
        "postcode": "ls1 4ap",
        "country": "GB",
    },
    "nhs_number": NHS_NUMBER,
    "region": "B",
}


def patient_body(**changes: Any) -> dict[str, Any]:
    """:data:`BODY` with top-level changes; ``address__postcode=...`` changes the address."""
    body = copy.deepcopy(BODY)
    for name, value in changes.items():
        if name.startswith("address__"):
            body["address"][name.removeprefix("address__")] = value
        else:
            body[name] = value
    return body
