"""The patient as integrating platforms send and read it (``PUT /api/v1/patients/{id}``).

The API's words (``given_name``, ``city``, ``gender: "female"``) differ from the columns
(``first_name``, ``town``, ``"Female"`` as the Region B platform wants it); the mapping lives
here, in :data:`GENDERS` and :meth:`PatientIn.columns` / :meth:`PatientOut.of`, and nowhere
else. Every check names its field and never repeats the value: the body is PHI.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import iso3166
from nhs_number.standardise import standardise_format
from nhs_number.validate import is_valid as valid_nhs_number
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from rxroute.admin.service import normalise_postcode
from rxroute.channels.erx.payload import normalise_phone
from rxroute.emails import normalise_email
from rxroute.models import Patient

#: API value -> stored value (the Region B platform's spelling, as the seed stores it).
GENDERS: dict[str, str] = {"female": "Female", "male": "Male", "other": "Other"}
Gender = Literal["female", "male", "other"]

#: Countries whose postcodes are UK postcodes (Guernsey, Jersey and the Isle of Man too).
UK_POSTCODE_COUNTRIES = frozenset({"GB", "GG", "JE", "IM"})
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EARLIEST_BIRTH_YEAR = 1900


def refuse(message: str) -> PydanticCustomError:
    """A validation error whose message is exactly ``message`` (no "Value error," prefix)."""
    return PydanticCustomError("invalid", message)


def _printable(value: str) -> str:
    if not value.isprintable():
        raise refuse("must not contain control characters (tabs, line breaks)")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
]
Line = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_printable),
]
OptionalLine = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_printable)
]


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Before ``postcode``, whose check depends on it (fields are validated in this order).
    country: str = Field(description="ISO 3166-1 alpha-2", examples=["GB"])
    line1: Line = Field(examples=["1 Example Street"])
    line2: OptionalLine = ""
    city: Name = Field(examples=["Leeds"])
    postcode: str = Field(
        max_length=16, description="A UK postcode when the country is GB", examples=["LS1 4AP"]
    )

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str) -> str:
        code = value.strip().upper()
        if code not in iso3166.countries_by_alpha2:
            raise refuse("not an ISO 3166-1 alpha-2 country code (the UK is GB)")
        return code

    @field_validator("postcode")
    @classmethod
    def _postcode(cls, value: str, info: ValidationInfo) -> str:
        country = info.data.get("country")
        if country is None or country in UK_POSTCODE_COUNTRIES:
            normalised = normalise_postcode(value)
            if normalised is None:
                raise refuse("not a UK postcode (e.g. LS1 4AP)")
            return normalised
        cleaned = " ".join(_printable(value).upper().split())
        if not cleaned:
            raise refuse("required")
        return cleaned


class PatientIn(BaseModel):
    """A patient as the platform knows them. Omitted ``nhs_number``/``region`` keep what is
    stored (``null`` clears the NHS number); every other field is replaced."""

    model_config = ConfigDict(extra="forbid")

    given_name: Name = Field(examples=["Alex"])
    family_name: Name = Field(examples=["Example"])
    date_of_birth: date = Field(description="YYYY-MM-DD, in the past", examples=["1985-03-07"])
    gender: Gender = Field(description="Required: the Region B platform requires it.")
    email: str = Field(max_length=320, examples=["alex@example.com"])
    # Before ``phone``: a national phone number is read in the address's country.
    address: AddressIn
    phone: str = Field(
        max_length=40,
        description="With country code, or national to the address's country",
        examples=["+44 7700 900123"],
    )
    nhs_number: str | None = Field(
        default=None, max_length=12, description="10 digits, mod-11 checked", examples=[None]
    )
    region: str | None = Field(
        default=None,
        max_length=8,
        description="A region rxroute serves; the default the patient's send form offers.",
        examples=["B"],
    )

    @field_validator("date_of_birth", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            raise refuse("must be a date as YYYY-MM-DD")
        return value

    @field_validator("date_of_birth")
    @classmethod
    def _plausible_birth(cls, value: date) -> date:
        if value > datetime.now(UTC).date():
            raise refuse("must not be in the future")
        if value.year < EARLIEST_BIRTH_YEAR:
            raise refuse(f"must be in {EARLIEST_BIRTH_YEAR} or later")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        normalised = normalise_email(value)
        if normalised is None:
            raise refuse("not a valid address")
        return normalised

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str, info: ValidationInfo) -> str:
        address = info.data.get("address")
        country = address.country if isinstance(address, AddressIn) else ""
        digits = normalise_phone(value, country)
        if digits is None:
            raise refuse(
                "not a phone number: give it with its country code (e.g. +44 7700 900123), "
                "or as a national number of the address's country"
            )
        return f"+{digits}"

    @field_validator("nhs_number")
    @classmethod
    def _nhs_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = standardise_format(value)
        if not digits:
            raise refuse("must be 10 digits (spaces or dashes as 3-3-4 allowed)")
        if not valid_nhs_number(digits):
            raise refuse("not a valid NHS number (its check digit does not match)")
        return digits

    @field_validator("region")
    @classmethod
    def _region_code(cls, value: str | None) -> str | None:
        return value.strip().upper() if value is not None else None

    def columns(self) -> dict[str, Any]:
        """The stored columns this body sets (omitted optional fields left out)."""
        values: dict[str, Any] = {
            "first_name": self.given_name,
            "last_name": self.family_name,
            "date_of_birth": self.date_of_birth,
            "gender": GENDERS[self.gender],
            "email": self.email,
            "phone": self.phone,
            "address_line1": self.address.line1,
            "address_line2": self.address.line2,
            "town": self.address.city,
            "postcode": self.address.postcode,
            "country": self.address.country,
        }
        if "nhs_number" in self.model_fields_set:
            values["nhs_number"] = self.nhs_number
        if self.region is not None:
            values["region"] = self.region
        return values


class AddressOut(BaseModel):
    line1: str
    line2: str
    city: str
    postcode: str
    country: str


class PatientOut(BaseModel):
    """The patient as stored, in the API's words."""

    id: uuid.UUID
    external_id: str | None
    given_name: str
    family_name: str
    date_of_birth: date
    gender: str
    email: str
    phone: str
    address: AddressOut
    nhs_number: str | None
    region: str | None = Field(description="Null until a region is set.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, patient: Patient) -> PatientOut:
        return cls(
            id=patient.id,
            external_id=patient.external_id,
            given_name=patient.first_name,
            family_name=patient.last_name,
            date_of_birth=patient.date_of_birth,
            gender=patient.gender.lower(),
            email=patient.email,
            phone=patient.phone,
            address=AddressOut(
                line1=patient.address_line1,
                line2=patient.address_line2,
                city=patient.town,
                postcode=patient.postcode,
                country=patient.country,
            ),
            nhs_number=patient.nhs_number,
            region=patient.region or None,
            created_at=patient.created_at,
            updated_at=patient.updated_at,
        )
