"""Which status changes a patient is emailed about, and what each is called.

One kind per event the platform gets (:mod:`rxroute.events.catalogue`), minus the ones that
are noise to a patient: ``queued`` (they just pressed send), ``signed`` and ``printed``
(steps inside the pharmacy's day). So the rule "what counts as a change" stays the outbox's.
"""

from __future__ import annotations

import enum

from rxroute.events.catalogue import EventType


class Kind(enum.StrEnum):
    SENT = "sent"
    DISPENSED = "dispensed"
    ACTION_NEEDED = "action_needed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REROUTED = "rerouted"

    @property
    def label(self) -> str:
        return LABELS[self]


_BY_EVENT: dict[EventType, Kind] = {
    EventType.SENT: Kind.SENT,
    EventType.DISPENSED: Kind.DISPENSED,
    EventType.FAILED: Kind.ACTION_NEEDED,
    EventType.EXPIRED: Kind.EXPIRED,
    EventType.CANCELLED: Kind.CANCELLED,
    EventType.REROUTED: Kind.REROUTED,
}

#: How the timelines name each kind: "Email sent to patient: <label>".
LABELS: dict[Kind, str] = {
    Kind.SENT: "sent to pharmacy",
    Kind.DISPENSED: "dispensed",
    Kind.ACTION_NEEDED: "action needed",
    Kind.EXPIRED: "expired",
    Kind.CANCELLED: "cancelled",
    Kind.REROUTED: "re-routed to a new pharmacy",
}


def kind_for_event(event_type: str | None) -> Kind | None:
    """The email announcing an event of ``event_type``; None when the patient gets none."""
    if event_type is None:
        return None
    try:
        return _BY_EVENT.get(EventType(event_type))
    except ValueError:
        return None


def timeline_label(kind: str) -> str:
    try:
        label = Kind(kind).label
    except ValueError:
        label = kind
    return f"Email sent to patient: {label}"
