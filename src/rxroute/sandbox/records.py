"""What the simulated platform holds and says: its records, statuses and exact messages.

The platform's business refusals are HTTP 200 with ``success: false`` and one of the exact
texts below (grammar included, as the case study found them); its prescriptions, tokens,
mailbox and counters are plain records. They are kept apart from the rules that change them
(:mod:`.state`) because the HTTP layer (:mod:`.app`), the pharmacy portal (:mod:`.portal`)
and the state file (:mod:`.persist`) read them too.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

UNAUTHORIZED_CLINIC = "You trying to issue prescription to unauthorized clinic."
INVALID_PRESCRIBER = "Invalid prescriber credentials."
INVALID_PIN = "Invalid secure pin."
INACTIVE_PRESCRIBER = "Prescriber account is inactive."
UNKNOWN_CONTACT = "The selected contact is invalid."
ALREADY_DISPENSED = "Prescription already dispensed."

PHARMACY_GROUPS = ("All Other Pharmacies", "Boots")

ISSUED, SIGNED, PRINTED, DISPENSED, EXPIRED, VOIDED = (
    "issued",
    "signed",
    "printed",
    "dispensed",
    "expired",
    "voided",
)
OPEN_STATUSES = frozenset({ISSUED, SIGNED, PRINTED})


class SandboxClock:
    """Wall time plus an offset that ``POST /_sandbox/clock/advance`` moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def iso(self, at: float | None = None) -> str:
        moment = dt.datetime.fromtimestamp(self.now() if at is None else at, dt.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PlatformError(Exception):
    """A business refusal: HTTP 200 with ``success: false`` (or 404 for unknown IDs)."""

    def __init__(self, message: str, status_code: int = 200) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass
class AccessToken:
    value: str
    client_id: str
    expires_at: float


@dataclass
class SessionToken:
    value: str
    prescriber_id: int
    client_id: str
    expires_at: float


@dataclass
class Prescription:
    id: str
    client_ref_id: str
    clinic_id: int
    contact_id: int
    prescriber_id: int
    patient: dict[str, Any]
    medicines: list[dict[str, Any]]
    notes: str | None
    notify: bool
    token: str
    link_base: str
    issued_at: float
    status: str = ISSUED
    token_used: bool = False
    pharmacy_group: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def issued(
        cls,
        payload: dict[str, Any],
        *,
        taken: Container[str],
        clinic_id: int,
        contact_id: int,
        prescriber_id: int,
        link_base: str,
        issued_at: float,
        issued_at_text: str,
    ) -> Prescription:
        """The record an accepted issue request creates: what the request says, a new id
        (``SRX`` and 12 hex digits) not in ``taken``, a new token, and the time."""
        while True:
            prescription_id = "SRX" + secrets.token_hex(6).upper()
            if prescription_id not in taken:
                break
        return cls(
            id=prescription_id,
            client_ref_id=str(payload["client_ref_id"]),
            clinic_id=clinic_id,
            contact_id=contact_id,
            prescriber_id=prescriber_id,
            patient=dict(payload["patient"]),
            medicines=[dict(m) for m in payload["medicines"]],
            notes=payload.get("notes"),
            notify=payload.get("notify", True) is not False,
            token=secrets.token_urlsafe(24),
            link_base=link_base.rstrip("/"),
            issued_at=issued_at,
            history=[{"status": ISSUED, "at": issued_at_text}],
        )

    def public(self, clock: SandboxClock, expire_after: float) -> dict[str, Any]:
        """The API's view: what the platform would return to the clinic."""
        return {
            "id": self.id,
            "status": self.status,
            "client_ref_id": self.client_ref_id,
            "token": self.token,
            "clinic_id": self.clinic_id,
            "contact_id": self.contact_id,
            "prescriber_id": self.prescriber_id,
            "created_at": clock.iso(self.issued_at),
            "expires_at": clock.iso(self.issued_at + expire_after),
            "status_history": list(self.history),
        }


@dataclass
class MailMessage:
    id: int
    to: str
    subject: str
    body: str
    link: str
    prescription_id: str
    sent_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "to": self.to,
            "subject": self.subject,
            "body": self.body,
            "link": self.link,
            "prescription_id": self.prescription_id,
            "sent_at": self.sent_at,
        }


@dataclass
class Counters:
    token_grants: int = 0
    token_refusals: int = 0
    prescriber_logins: int = 0
    prescriber_login_failures: int = 0
    unauthenticated: int = 0
    business_errors: int = 0
    validation_errors: int = 0
    injected_errors: int = 0
    injected_drops: int = 0
    injected_latency: int = 0
    issued_by_client_ref_id: Counter[str] = field(default_factory=Counter)
