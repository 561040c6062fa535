"""Which change of status is which event, and exactly what an event says.

One event per change of a prescription's *current* status. The body is the same for every
type and carries ids and statuses only, never patient details::

    {"type": "prescription.sent", "timestamp": "...",
     "data": {"prescription_id", "external_id", "status", "previous_status",
              "occurred_at", "region", "pharmacy_id"}}
"""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime
from typing import Any, assert_never

from rxroute.prescriptions.lifecycle import Status


class EventType(enum.StrEnum):
    QUEUED = "prescription.queued"
    #: Issued on the platform (Region B) or emailed to the pharmacy (Region A).
    SENT = "prescription.sent"
    SIGNED = "prescription.signed"
    PRINTED = "prescription.printed"
    DISPENSED = "prescription.dispensed"
    FAILED = "prescription.failed"
    EXPIRED = "prescription.expired"
    #: Voided on the platform, or cancelled by the patient or support.
    CANCELLED = "prescription.cancelled"
    #: Queued again for a new delivery (another pharmacy, or the same one afresh).
    REROUTED = "prescription.rerouted"


ALL_EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)


def event_type_for(status: Status, *, rerouted: bool = False) -> EventType | None:
    """The event announcing that the current status became ``status``; None for none.

    ``rerouted``: the ``queued`` opens a new delivery replacing an earlier one. ``sending``
    is our own worker picking the prescription up: not news for the platform.
    """
    match status:
        case Status.QUEUED:
            return EventType.REROUTED if rerouted else EventType.QUEUED
        case Status.ISSUED | Status.EMAILED:
            return EventType.SENT
        case Status.SIGNED:
            return EventType.SIGNED
        case Status.PRINTED:
            return EventType.PRINTED
        case Status.DISPENSED:
            return EventType.DISPENSED
        case Status.FAILED:
            return EventType.FAILED
        case Status.EXPIRED:
            return EventType.EXPIRED
        case Status.VOIDED:
            return EventType.CANCELLED
        case Status.DRAFT | Status.SENDING:
            return None
        case _:
            assert_never(status)


def iso(moment: datetime) -> str:
    """``2026-07-01T12:00:00.123Z``: UTC, milliseconds, so receivers can order by it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(
    event_type: EventType,
    *,
    created_at: datetime,
    prescription_id: uuid.UUID,
    external_id: str | None,
    status: Status,
    previous_status: Status,
    occurred_at: datetime,
    region: str | None,
    pharmacy_id: uuid.UUID | None,
) -> str:
    """The exact JSON text sent (and signed) for every attempt of this event."""
    body: dict[str, Any] = {
        "type": event_type.value,
        "timestamp": iso(created_at),
        "data": {
            "prescription_id": str(prescription_id),
            "external_id": external_id,
            "status": status.value,
            "previous_status": previous_status.value,
            "occurred_at": iso(occurred_at),
            "region": region,
            "pharmacy_id": str(pharmacy_id) if pharmacy_id is not None else None,
        },
    }
    return json.dumps(body, separators=(",", ":"))
