"""The prescription lifecycle: statuses, who reports them, and how the current one is derived.

Region B: ``draft -> queued -> sending -> issued -> signed -> printed? -> dispensed``, or
``-> expired`` / ``-> voided``. Region A: ``queued -> sending -> emailed -> dispensed``. A send
that gave up is ``failed``; support may start a fresh series (``queued`` again).

Every fact is about one delivery (see :mod:`rxroute.models.delivery`), and the current status
is derived from the *current* delivery's facts only. Facts come in two kinds:

* **far-side facts** (issued, emailed, signed, printed, dispensed, expired, voided): what the
  platform, the pharmacy or our own withdrawal established. The status is the furthest one
  by rank, whatever order they arrive in (a ``signed`` seen while we still think we are
  ``queued`` takes effect at once; a late ``signed`` after ``dispensed`` changes nothing).
* **local facts** (queued, sending, failed): where our own sending stands. They count only
  until something reached the far side, and follow a few local edges.

So the status never moves backwards, and each real transition is in the history once.
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

    @property
    def rank(self) -> int:
        return RANK[self]


class Source(enum.StrEnum):
    """Who told us about a status change."""

    PATIENT = "patient"
    #: An integrating platform's API key, acting on the patient's behalf.
    API = "api"
    WORKER = "worker"
    WEBHOOK = "webhook"
    POLL = "poll"
    SUPPORT = "support"
    PHARMACY = "pharmacy"
    SYSTEM = "system"


FINAL_STATUSES = frozenset({Status.DISPENSED, Status.EXPIRED, Status.VOIDED})

#: Statuses the platform (or the pharmacy) reports. Kept as it was when the history's
#: once-per-delivery index was created (the index's predicate is built from it).
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

#: Facts about the far side: each is recorded at most once per delivery.
FAR_SIDE_STATUSES = PROVIDER_STATUSES | {Status.EMAILED}

#: Issued on the platform and not final: what reconciliation asks the platform about. The
#: reconciliation index's predicate (migration 0013) is built from it: change both together.
POLLABLE_STATUSES = (Status.ISSUED, Status.SIGNED, Status.PRINTED)

#: Facts about our own sending.
LOCAL_STATUSES = frozenset({Status.QUEUED, Status.SENDING, Status.FAILED})

#: Sources reporting facts about the outside world rather than asking for a change.
OBSERVING_SOURCES = frozenset({Source.WEBHOOK, Source.POLL, Source.PHARMACY})

#: How far along a prescription is. Equal ranks never replace each other (first one wins).
RANK: dict[Status, int] = {
    Status.DRAFT: 0,
    Status.QUEUED: 1,
    Status.SENDING: 2,
    Status.FAILED: 3,
    Status.ISSUED: 4,
    Status.EMAILED: 4,
    Status.SIGNED: 5,
    Status.PRINTED: 6,
    Status.DISPENSED: 7,
    Status.EXPIRED: 7,
    Status.VOIDED: 7,
}

#: Moves between local facts while nothing has reached the far side.
LOCAL_EDGES: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.QUEUED}),
    Status.QUEUED: frozenset({Status.SENDING, Status.FAILED}),
    Status.SENDING: frozenset({Status.FAILED}),
    # Support's retry (or the patient sending again) starts a fresh series.
    Status.FAILED: frozenset({Status.QUEUED}),
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

#: Statuses from which the patient or support may re-route or cancel: not yet dispensed,
#: expired or voided.
CHANGEABLE = frozenset(Status) - FINAL_STATUSES


class InvalidTransition(ValueError):
    """A command asked for a move the lifecycle does not allow."""

    def __init__(self, current: Status, requested: Status) -> None:
        super().__init__(f"cannot move a prescription from {current} to {requested}")
        self.current = current
        self.requested = requested


def advances(current: Status, new: Status) -> bool:
    """Whether the fact ``new`` moves a delivery whose status is ``current``."""
    if current.is_final:
        return False
    if new in FAR_SIDE_STATUSES:
        return new.rank > current.rank
    if current in FAR_SIDE_STATUSES:
        return False  # something reached the far side: our own attempts no longer matter
    return new in LOCAL_EDGES.get(current, frozenset())


def can_transition(current: Status, new: Status) -> bool:
    """Kept for readability at call sites: the same rule as :func:`advances`."""
    return advances(current, new)


def derive_status(statuses: Iterable[Status]) -> Status:
    """The status implied by one delivery's facts, in the order they were recorded."""
    current = Status.DRAFT
    for status in statuses:
        if advances(current, status):
            current = status
    return current


def decide(current: Status, new: Status, source: Source) -> bool:
    """Whether recording ``new`` moves the current status.

    True to move; False to record without moving (a far-side fact that is late or out of
    order, or a local fact from our own worker that is overtaken by events). Raises
    :class:`InvalidTransition` for a command (a patient, support or the system asking for a
    change) that is not allowed.
    """
    if advances(current, new):
        return True
    if source in OBSERVING_SOURCES or source is Source.WORKER or new in FAR_SIDE_STATUSES:
        return False
    raise InvalidTransition(current, new)
