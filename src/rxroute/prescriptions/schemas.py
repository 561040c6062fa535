from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from rxroute.models import Delivery, PatientNotification, Prescription, PrescriptionStatusEvent
from rxroute.notifications.kinds import timeline_label
from rxroute.pharmacies.schemas import PharmacyOut
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.writing import MAX_ITEMS
from rxroute.timezones import format_display


class SendRequest(BaseModel):
    region: str | None = Field(default=None, max_length=8, examples=["B"])
    pharmacy_id: uuid.UUID | None = Field(default=None, description="rxroute's pharmacy id")


class RerouteRequest(SendRequest):
    reason: str | None = Field(
        default=None,
        max_length=500,
        description="Why (required for support; optional for the patient). Kept in the history.",
    )


class ReasonRequest(BaseModel):
    reason: str | None = Field(
        default=None, max_length=500, description="Why; kept in the history."
    )


class SendAccepted(BaseModel):
    id: uuid.UUID
    status: str
    status_url: str


class ItemOut(BaseModel):
    description: str
    quantity: str
    directions: str
    dmd_vpid: str | None
    dmd_apid: str | None


class StatusEventOut(BaseModel):
    status: str
    delivery_id: uuid.UUID | None
    label: str
    source: str
    provider_status: str | None
    provider_event_id: str | None
    actor: str | None
    detail: str | None
    occurred_at: datetime
    #: ``occurred_at`` as people read it, in the configured display zone with the zone named;
    #: the live timeline shows this, so browser and server apply one rule.
    occurred_at_display: str = Field(examples=["1 Jul 2026, 13:00 BST"])
    recorded_at: datetime

    @classmethod
    def of(cls, event: PrescriptionStatusEvent, zone: ZoneInfo) -> StatusEventOut:
        return cls(
            status=event.status,
            delivery_id=event.delivery_id,
            label=Status(event.status).label,
            source=event.source,
            provider_status=event.provider_status,
            provider_event_id=event.provider_event_id,
            actor=event.actor,
            detail=event.detail,
            occurred_at=event.occurred_at,
            occurred_at_display=format_display(event.occurred_at, zone),
            recorded_at=event.recorded_at,
        )


class PrescriptionOut(BaseModel):
    id: uuid.UUID
    #: The integrating platform's own ID for it, echoed as given (null when it gave none).
    external_id: str | None
    status: str
    status_label: str
    is_final: bool
    region: str | None
    channel: str | None
    pharmacy: PharmacyOut | None
    provider_prescription_id: str | None
    failure_reason: str | None
    items: list[ItemOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, prescription: Prescription) -> PrescriptionOut:
        status = Status(prescription.status)
        return cls(
            id=prescription.id,
            external_id=prescription.external_id,
            status=status.value,
            status_label=status.label,
            is_final=status.is_final,
            region=prescription.region,
            channel=prescription.channel,
            pharmacy=PharmacyOut.of(prescription.pharmacy) if prescription.pharmacy else None,
            provider_prescription_id=prescription.provider_prescription_id,
            failure_reason=prescription.failure_reason,
            items=[
                ItemOut(
                    description=item.description,
                    quantity=item.quantity,
                    directions=item.directions,
                    dmd_vpid=item.dmd_vpid,
                    dmd_apid=item.dmd_apid,
                )
                for item in prescription.items
            ],
            created_at=prescription.created_at,
            updated_at=prescription.updated_at,
        )


class DeliveryOut(BaseModel):
    """One attempt to get the prescription to a pharmacy, and where it stands."""

    id: uuid.UUID
    number: int
    state: str
    region: str
    channel: str
    pharmacy_id: uuid.UUID
    #: The platform's prescription ID, or the email's Message-ID.
    provider_ref: str | None
    series: int
    attempts_in_series: int
    reason: str | None
    closed_reason: str | None
    created_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return cls.model_validate(delivery, from_attributes=True)


class PatientEmailOut(BaseModel):
    """An email sent to the patient about a status change (its text is not kept)."""

    kind: str = Field(
        examples=["dispensed"],
        description="sent, dispensed, action_needed, expired, cancelled or rerouted",
    )
    label: str = Field(examples=["Email sent to patient: dispensed"])
    sent_at: datetime
    #: ``sent_at`` in the configured display zone, zone named (as ``occurred_at_display``).
    sent_at_display: str = Field(examples=["1 Jul 2026, 13:00 BST"])

    @classmethod
    def of(cls, notification: PatientNotification, zone: ZoneInfo) -> PatientEmailOut:
        assert notification.sent_at is not None
        return cls(
            kind=notification.kind,
            label=timeline_label(notification.kind),
            sent_at=notification.sent_at,
            sent_at_display=format_display(notification.sent_at, zone),
        )


class PrescriptionDetail(PrescriptionOut):
    history: list[StatusEventOut]
    deliveries: list[DeliveryOut]
    #: Status emails sent to the patient, oldest first.
    patient_emails: list[PatientEmailOut]


class PrescriptionList(BaseModel):
    results: list[PrescriptionOut]


# --- written by an integrating platform (POST /api/v1/prescriptions) -------------------

_DMD_CODE = re.compile(r"[0-9]{6,18}")


def _printable_id(value: str) -> str:
    if not value.isprintable() or value != value.strip():
        raise PydanticCustomError(
            "invalid", "printable characters, without leading or trailing spaces"
        )
    return value


PlatformId = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable_id)
]


def _dmd_code(value: str | None) -> str | None:
    if value is not None and not _DMD_CODE.fullmatch(value):
        raise PydanticCustomError("invalid", "a dm+d code: 6 to 18 digits")
    return value


DmdCode = Annotated[str | None, AfterValidator(_dmd_code)]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    description: str = Field(min_length=1, max_length=500, examples=["Semaglutide 0.25mg pen"])
    quantity: str = Field(min_length=1, max_length=100, examples=["1 pen"])
    directions: str = Field(min_length=1, max_length=1000, examples=["Inject once weekly"])
    dmd_vpid: DmdCode = Field(default=None, description="dm+d VPID", examples=[None])
    dmd_apid: DmdCode = Field(default=None, description="dm+d APID", examples=[None])


class PrescriptionCreate(BaseModel):
    """A prescription written on the platform; give exactly one of the prescriber fields."""

    model_config = ConfigDict(extra="forbid")

    patient_external_id: PlatformId = Field(description="As in PUT /api/v1/patients/{id}.")
    prescriber_id: uuid.UUID | None = Field(default=None, description="rxroute's id")
    prescriber_external_id: PlatformId | None = Field(
        default=None, description="The platform's id (GET /api/v1/prescribers lists both)."
    )
    external_id: PlatformId | None = Field(
        default=None, description="The platform's own id for it; unique, echoed in events."
    )
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)
