"""The prescription lifecycle: one explicit state machine.

Region B: ``draft -> queued -> sending -> issued -> signed -> printed? -> dispensed``, or
``-> expired`` / ``-> voided``. Region A: ``queued -> (sending ->) emailed -> dispensed``. A
failed send is ``failed`` and support may queue it again.

The history is append-only and the current status is a fold over it (:func:`derive_status`):
an event moves the status only along an allowed edge. Facts reported by the platform
(webhooks, polls) that arrive late - ``signed`` after ``dispensed`` - are still recorded at
their true time but cannot move the status backwards. Commands (a patient sending, support
retrying) that are not allowed from the current status are refused instead.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Status(enum.StrEnum):
    DRAFT = "draft"
    QUEUED = "queued"
    SENDING = "sending"
    ISSUED = "issued"
    EMAILED = "emailed"
    SIGNED = "signed"
    PRINTED = "printed"
    DISPENSED = "dispensed"
    FAILED = "failed"
    EXPIRED = "expired"
    VOIDED = "voided"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def label(self) -> str:
        return LABELS[self]


class Source(enum.StrEnum):
    """Who told us about a status change."""

    PATIENT = "patient"
    WORKER = "worker"
    WEBHOOK = "webhook"
    POLL = "poll"
    SUPPORT = "support"
    PHARMACY = "pharmacy"
    SYSTEM = "system"


FINAL_STATUSES = frozenset({Status.DISPENSED, Status.EXPIRED, Status.VOIDED})

#: Statuses the platform (or the pharmacy) reports; each happens at most once per prescription.
PROVIDER_STATUSES = frozenset(
    {
        Status.ISSUED,
        Status.SIGNED,
        Status.PRINTED,
        Status.DISPENSED,
        Status.EXPIRED,
        Status.VOIDED,
    }
)

#: Sources reporting facts about the outside world rather than asking for a change.
OBSERVING_SOURCES = frozenset({Source.WEBHOOK, Source.POLL, Source.PHARMACY})

_AFTER_ISSUE = frozenset(
    {Status.SIGNED, Status.PRINTED, Status.DISPENSED, Status.EXPIRED, Status.VOIDED}
)

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.QUEUED}),
    Status.QUEUED: frozenset({Status.SENDING, Status.EMAILED, Status.FAILED}),
    # The platform may report a later status before our own job has recorded "issued".
    Status.SENDING: frozenset({Status.ISSUED, Status.EMAILED, Status.FAILED} | _AFTER_ISSUE),
    # A send we gave up on may turn out to have reached the platform after all: its word wins.
    Status.FAILED: frozenset({Status.QUEUED, Status.ISSUED, Status.EMAILED} | _AFTER_ISSUE),
    Status.ISSUED: _AFTER_ISSUE,
    Status.SIGNED: frozenset({Status.PRINTED, Status.DISPENSED, Status.EXPIRED, Status.VOIDED}),
    Status.PRINTED: frozenset({Status.DISPENSED, Status.EXPIRED, Status.VOIDED}),
    Status.EMAILED: frozenset({Status.DISPENSED, Status.EXPIRED, Status.VOIDED}),
    Status.DISPENSED: frozenset(),
    Status.EXPIRED: frozenset(),
    Status.VOIDED: frozenset(),
}

LABELS: dict[Status, str] = {
    Status.DRAFT: "Ready to send",
    Status.QUEUED: "Queued for sending",
    Status.SENDING: "Sending",
    Status.ISSUED: "Sent to pharmacy",
    Status.EMAILED: "Emailed to pharmacy",
    Status.SIGNED: "Signed by prescriber",
    Status.PRINTED: "Printed by pharmacy",
    Status.DISPENSED: "Dispensed",
    Status.FAILED: "Not sent",
    Status.EXPIRED: "Expired",
    Status.VOIDED: "Cancelled",
}

#: Statuses in which a send may not be requested (it is in flight or already happened).
NOT_SENDABLE = frozenset(Status) - {Status.DRAFT, Status.FAILED}


class InvalidTransition(ValueError):
    """A command asked for a move the state machine does not allow."""

    def __init__(self, current: Status, requested: Status) -> None:
        super().__init__(f"cannot move a prescription from {current} to {requested}")
        self.current = current
        self.requested = requested


def can_transition(current: Status, new: Status) -> bool:
    return new in TRANSITIONS[current]


def derive_status(statuses: Iterable[Status]) -> Status:
    """The current status implied by a history, in the order it was recorded."""
    current = Status.DRAFT
    for status in statuses:
        if can_transition(current, status):
            current = status
    return current


def decide(current: Status, new: Status, source: Source) -> bool:
    """Whether recording ``new`` moves the current status.

    Returns True to move, False to record without moving: an observed fact that is late or
    out of order (anything a webhook, poll or pharmacy reports, and any platform status,
    which is the platform's word even when our own worker relays it). Raises
    :class:`InvalidTransition` for a command that is not allowed.
    """
    if can_transition(current, new):
        return True
    if source in OBSERVING_SOURCES or new in PROVIDER_STATUSES:
        return False
    raise InvalidTransition(current, new)
