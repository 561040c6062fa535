"""What the send job carries from its claim to its record, and what it returns.

Shared by the job (:mod:`rxroute.deliveries.sending`) and the common path's statements
(:mod:`rxroute.deliveries.common_path`), so neither imports the other's internals.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from rxroute.channels.base import Channel
from rxroute.prescriptions.lifecycle import Status


@dataclass(frozen=True)
class SendOutcome:
    """What one run of the send job did; returned for tests and logs."""

    result: str  # issued, emailed, found, failed, retry, skipped
    detail: str = ""
    retry_in_seconds: float | None = None


@dataclass(frozen=True)
class RecordContext:
    """What the one-statement record of a delivered send needs, read when it was claimed.

    The record applies only if the prescription still has ``expected_status`` and this
    delivery as its current one, and the delivery still carries this run's claim: then
    nothing else changed the rows it writes since, and what was decided from them holds.
    """

    prescription_id: uuid.UUID
    patient_id: uuid.UUID
    external_id: str | None
    region: str | None
    pharmacy_id: uuid.UUID | None
    series: int
    expected_status: Status
    #: The event endpoints that want a ``sent`` event, as read with the claim.
    endpoints: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class Claimed:
    delivery_id: uuid.UUID
    number: int
    channel: Channel
    claim: uuid.UUID
    attempt: int
    must_look_up: bool
    destination: str | None
    #: Platform references of the prescription's other deliveries: never ours to adopt.
    other_refs: frozenset[str]
    #: Another delivery of the prescription reached out to the same pharmacy: a voided or
    #: expired copy there may be its (voided when it was replaced), not ours.
    shares_destination: bool
    prepared: Any
    #: Set when claimed by the common path: the record may then be one statement too.
    record: RecordContext | None = None
