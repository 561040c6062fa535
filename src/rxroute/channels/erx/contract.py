"""Every name the Region B platform's wire contract uses, in one place.

The platform publishes no open API reference (see ``docs/platform-contract.md``), so
some of these names are our best guess. Keeping every path, header name, field name and
exact message text here means a difference found against the real platform is a one-line
change here plus a recorded fixture under ``tests/fixtures/erx/``, never a refactor.

The request models serialise to exactly the contract's field names; the response models are
lenient about extra fields and strict about the few fields rxroute relies on, so an
unexpected shape becomes a typed error instead of a wrong "sent".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from rxroute.config import Settings

# --- headers ----------------------------------------------------------------------------------
#: The header names exactly as the platform expects them (lesson 6: it is strict).
HEADER_AUTHORIZATION = "Authorization"
HEADER_PRESCRIBER_TOKEN = "X-Prescriber-Token"  # noqa: S105 - a header name
HEADER_ACCEPT = "Accept"
HEADER_CONTENT_TYPE = "Content-Type"
HEADER_RETRY_AFTER = "Retry-After"
#: Webhook headers (verified by :mod:`rxroute.webhooks.signature`).
HEADER_SIGNATURE = "X-Signature"
HEADER_SIGNATURE_TIMESTAMP = "X-Signature-Timestamp"

#: The scheme word, one space, then the token. ``bearer`` or two spaces get a 401.
AUTH_SCHEME = "Bearer"
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_FORM = "application/x-www-form-urlencoded"


def bearer(access_token: str) -> str:
    """The one place the Authorization value is formatted, so it cannot drift."""
    return f"{AUTH_SCHEME} {access_token}"


# --- OAuth (step 1) ---------------------------------------------------------------------------
GRANT_TYPE = "grant_type"
GRANT_TYPE_CLIENT_CREDENTIALS = "client_credentials"
FIELD_CLIENT_ID = "client_id"
FIELD_CLIENT_SECRET = "client_secret"  # noqa: S105 - a field name, not a secret
FIELD_OAUTH_ERROR = "error"
OAUTH_ERROR_INVALID_CLIENT = "invalid_client"
TOKEN_TYPE_BEARER = "bearer"  # noqa: S105 - a token type name, not a secret

# --- prescriber login (step 2) ----------------------------------------------------------------
FIELD_EMAIL = "email"
FIELD_PASSWORD = "password"  # noqa: S105 - a field name, not a secret

# --- envelope ---------------------------------------------------------------------------------
FIELD_SUCCESS = "success"
FIELD_MESSAGE = "message"
FIELD_DATA = "data"
FIELD_ERRORS = "errors"
FIELD_PRESCRIPTION = "prescription"
FIELD_PRESCRIPTIONS = "prescriptions"
FIELD_CLINICS = "clinics"
FIELD_CONTACTS = "contacts"

# --- issuing ----------------------------------------------------------------------------------
ACTION_ISSUE_TO_CONTACT: Literal["issueToContact"] = "issueToContact"
QUERY_CLIENT_REF_ID = "client_ref_id"

# --- exact message texts the client recognises ------------------------------------------------
#: Exactly this text, grammar included (case study lesson 2).
MESSAGE_UNAUTHORIZED_CLINIC = "You trying to issue prescription to unauthorized clinic."
MESSAGE_INVALID_PRESCRIBER_CREDENTIALS = "Invalid prescriber credentials."
MESSAGE_INVALID_SECURE_PIN = "Invalid secure pin."
MESSAGE_UNAUTHENTICATED = "Unauthenticated."
MESSAGE_ALREADY_DISPENSED = "Prescription already dispensed."
MESSAGE_VALIDATION_FAILED = "The given data was invalid."
#: The contract names these cases but not their text, so they are matched by keyword.
KEYWORD_UNKNOWN_CONTACT = "contact"
KEYWORD_INACTIVE_PRESCRIBER = "inactive"

# --- provider statuses ------------------------------------------------------------------------
PROVIDER_STATUSES = ("issued", "signed", "printed", "dispensed", "expired", "voided")


@dataclass(frozen=True)
class Paths:
    """Absolute URLs of every endpoint, derived from settings so environments differ by config."""

    token: str
    login: str
    clinics: str
    contacts: str
    prescriptions: str
    api_prefix: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Paths:
        base = settings.erx_base_url.rstrip("/")
        prefix = "/" + settings.erx_api_prefix.strip("/")
        api = base + prefix
        token_path = "/" + settings.erx_token_path.lstrip("/")
        return cls(
            token=base + token_path,
            login=api + "/login",
            clinics=api + "/clinics",
            contacts=api + "/contacts",
            prescriptions=api + "/prescriptions",
            api_prefix=api,
        )

    def prescription(self, prescription_id: str) -> str:
        return f"{self.prescriptions}/{prescription_id}"

    def void(self, prescription_id: str) -> str:
        return f"{self.prescriptions}/{prescription_id}/void"


# --- request models ---------------------------------------------------------------------------

Gender = Literal["Male", "Female", "Other"]


class _Wire(BaseModel):
    """Request models: immutable, no unknown fields, and a repr that carries no PHI."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, hide_input_in_errors=True
    )


class PatientPayload(_Wire):
    first_name: str = Field(min_length=1)
    last_name: str = Field(min_length=1)
    gender: Gender
    email: str = Field(min_length=3)
    #: Digits with country code, no ``+`` (``447700900123``).
    phone: str = Field(pattern=r"^[1-9][0-9]{7,14}$")
    birth_day: str = Field(pattern=r"^(0[1-9]|[12][0-9]|3[01])$")
    birth_month: str = Field(pattern=r"^(0[1-9]|1[0-2])$")
    birth_year: str = Field(pattern=r"^[0-9]{4}$")
    address_ln1: str = Field(min_length=1)
    address_ln2: str = ""
    city: str = Field(min_length=1)
    post_code: str = Field(min_length=1)
    country: str = Field(min_length=1)
    nhs_number: str | None = Field(default=None, pattern=r"^[0-9]{10}$")

    def __repr__(self) -> str:
        return "PatientPayload(<redacted>)"

    __str__ = __repr__


class MedicinePayload(_Wire):
    description: str = Field(min_length=1)
    #: A whole number of the item (the platform refuses "1 pen"); the unit is in the description.
    qty: str = Field(pattern=r"^[1-9][0-9]{0,5}$")
    directions: str = Field(min_length=1)
    vpid: str | None = Field(default=None, alias="VPID", pattern=r"^[0-9]{1,20}$")
    apid: str | None = Field(default=None, alias="APID", pattern=r"^[0-9]{1,20}$")

    def __repr__(self) -> str:
        return f"MedicinePayload(vpid={self.vpid!r}, apid={self.apid!r})"

    __str__ = __repr__


class IssuePayload(_Wire):
    action: Literal["issueToContact"] = ACTION_ISSUE_TO_CONTACT
    clinic_id: PositiveInt
    contact_id: PositiveInt
    secure_pin: str = Field(pattern=r"^[0-9]{6}$")
    prescriber_ip: str = Field(min_length=2)
    notify: bool = True
    client_ref_id: str = Field(min_length=1, max_length=64)
    notes: str = ""
    patient: PatientPayload
    medicines: list[MedicinePayload] = Field(min_length=1)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body, with the contract's spelling (``VPID``) and optional fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def __repr__(self) -> str:
        return (
            f"IssuePayload(client_ref_id={self.client_ref_id!r}, clinic_id={self.clinic_id}, "
            f"contact_id={self.contact_id}, medicines={len(self.medicines)})"
        )

    __str__ = __repr__


# --- response models --------------------------------------------------------------------------


class _Lenient(BaseModel):
    """Response models ignore fields we do not use, so additions on the platform are harmless."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


class TokenResponse(_Lenient):
    access_token: str = Field(min_length=1)
    token_type: str = TOKEN_TYPE_BEARER
    #: RFC 6749 makes this optional; ``None`` means the client falls back to a short lifetime.
    expires_in: PositiveInt | None = None


class LoginPrescriber(_Lenient):
    id: int


class LoginData(_Lenient):
    token: str = Field(min_length=1)
    expires_in: PositiveInt | None = None
    prescriber: LoginPrescriber | None = None


class PrescriptionRecord(_Lenient):
    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    client_ref_id: str | None = None
    token: str | None = None
    #: The pharmacy (clinic contact) it is addressed to, when the platform says.
    contact_id: str | None = None

    @field_validator("id", "client_ref_id", "contact_id", mode="before")
    @classmethod
    def _int_to_str(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class PrescriptionData(_Lenient):
    """``data`` of issue/get/void answers: the ID lives ONLY at ``data.prescription.id``."""

    prescription: PrescriptionRecord


class PrescriptionListData(_Lenient):
    prescriptions: list[PrescriptionRecord]


class ClinicRecord(_Lenient):
    id: int
    unique_id: str
    name: str = ""

    @field_validator("unique_id", mode="before")
    @classmethod
    def _display_id_to_str(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ClinicListData(_Lenient):
    clinics: list[ClinicRecord]


class ContactRecord(_Lenient):
    id: int
    name: str = ""
    email: str = ""
    post_code: str = ""


class ContactListData(_Lenient):
    contacts: list[ContactRecord]
