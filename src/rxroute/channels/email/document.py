"""What goes on a Region A prescription, as plain values.

Kept free of ORM types so the PDF and the email can be built and tested without a database,
and so the caller decides exactly which fields leave the system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class PrescriberDetails:
    name: str
    registration_number: str
    email: str


@dataclass(frozen=True, slots=True)
class PatientDetails:
    full_name: str
    date_of_birth: date
    address_lines: tuple[str, ...]
    town: str
    postcode: str
    nhs_number: str | None = None


@dataclass(frozen=True, slots=True)
class PharmacyDetails:
    name: str
    address_lines: tuple[str, ...]
    postcode: str


@dataclass(frozen=True, slots=True)
class PrescriptionItem:
    description: str
    #: Free text with its unit ("4 pre-filled pens"), as the prescriber wrote it.
    quantity: str
    directions: str
    #: dm+d code (VMP/AMP id) when known; pharmacies use it to pick the exact product.
    dmd_code: str | None = None


@dataclass(frozen=True, slots=True)
class PrescriptionDocument:
    #: rxroute's own prescription ID: the only identifier printed outside the PHI blocks.
    prescription_id: str
    issued_on: date
    prescriber: PrescriberDetails
    patient: PatientDetails
    pharmacy: PharmacyDetails
    items: tuple[PrescriptionItem, ...] = field(default_factory=tuple)
    notes: str | None = None
    #: Printed at the bottom so a pharmacist holding only the paper can still confirm.
    confirm_url: str | None = None
    #: The short reference people quote (see :mod:`rxroute.prescriptions.reference`): the
    #: email's subject and the PDF's heading; the full ID stays in the PDF's small print.
    reference: str | None = None
    #: Set on a resend: the words that make a copy unmistakable ("COPY - do not dispense
    #: twice"), printed at the top of the PDF and in the email.
    copy_notice: str | None = None

    @property
    def quoted(self) -> str:
        """What the pharmacy quotes: the short reference, or the ID when there is none."""
        return self.reference or self.prescription_id
