"""The short reference people quote: the one place it is derived from the prescription.

rxroute's prescription ID is a 36-character UUID: fine for machines, useless on the phone.
People (the patient, the pharmacy, support) quote a short reference instead, and it must be
the one the pharmacy sees:

* Region A (email): :func:`short_reference`, printed in the email's subject and on the PDF;
* Region B (the platform): the platform's own prescription ID, which the pharmacy sees on
  the platform's email and dashboard, once the prescription is issued there.

The short reference is the UUID's first eight hex digits, so support can find it with a
partial-ID search; it is for quoting, not a key (the full ID stays on the PDF).
"""

from __future__ import annotations

import uuid
from typing import Protocol

PREFIX = "RX"


def short_reference(prescription_id: uuid.UUID | str) -> str:
    """``RX-1A2B-3C4D``: the UUID's first eight hex digits, grouped to read aloud."""
    digits = uuid.UUID(str(prescription_id)).hex[:8].upper()
    return f"{PREFIX}-{digits[:4]}-{digits[4:]}"


def id_prefix_of(reference: str) -> str | None:
    """The ID's first hex digits a typed short reference stands for (``rx-1a2b 3c4d`` ->
    ``1a2b3c4d``), or None when the text is not one: for finding a prescription by it."""
    compact = "".join(reference.split()).replace("-", "").upper()
    if not compact.startswith(PREFIX):
        return None
    digits = compact.removeprefix(PREFIX)
    if len(digits) != 8 or any(ch not in "0123456789ABCDEF" for ch in digits):
        return None
    return digits.lower()


class _Referenced(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def provider_prescription_id(self) -> str | None: ...


def patient_reference(prescription: _Referenced) -> str:
    """The reference the pharmacy sees: the platform's ID once issued there, else ours."""
    return prescription.provider_prescription_id or short_reference(prescription.id)
