"""Which status change is which event, the retry schedule, and the signed headers."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from rxroute.config import Settings
from rxroute.events.catalogue import ALL_EVENT_TYPES, EventType, event_body, event_type_for
from rxroute.events.delivery import (
    MAX_RETRY_WAIT,
    RETRY_HORIZON,
    max_attempts,
    retry_waits,
    signed_headers,
    wait_after,
)
from rxroute.events.secrets import new_secret
from rxroute.prescriptions.lifecycle import Status

EXPECTED: dict[Status, str | None] = {
    Status.DRAFT: None,
    Status.QUEUED: "prescription.queued",
    Status.SENDING: None,
    Status.ISSUED: "prescription.sent",
    Status.EMAILED: "prescription.sent",
    Status.SIGNED: "prescription.signed",
    Status.PRINTED: "prescription.printed",
    Status.DISPENSED: "prescription.dispensed",
    Status.FAILED: "prescription.failed",
    Status.EXPIRED: "prescription.expired",
    Status.VOIDED: "prescription.cancelled",
}


def test_every_status_is_mapped() -> None:
    assert set(EXPECTED) == set(Status)


@pytest.mark.parametrize("status", list(Status))
def test_type_for_each_status(status: Status) -> None:
    found = event_type_for(status)
    assert (found.value if found else None) == EXPECTED[status]


@pytest.mark.parametrize("status", list(Status))
def test_only_a_queued_can_be_a_reroute(status: Status) -> None:
    found = event_type_for(status, rerouted=True)
    expected = "prescription.rerouted" if status is Status.QUEUED else EXPECTED[status]
    assert (found.value if found else None) == expected


def test_every_type_is_reachable() -> None:
    reached = {event_type_for(s) for s in Status} | {event_type_for(Status.QUEUED, rerouted=True)}
    assert reached - {None} == set(ALL_EVENT_TYPES) == set(EventType)


def test_body_shape() -> None:
    moment = datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=UTC)
    pid, pharmacy = uuid.uuid4(), uuid.uuid4()
    body = json.loads(
        event_body(
            EventType.SENT,
            created_at=moment,
            prescription_id=pid,
            external_id=None,
            status=Status.EMAILED,
            previous_status=Status.SENDING,
            occurred_at=moment,
            region="A",
            pharmacy_id=pharmacy,
        )
    )
    assert body == {
        "type": "prescription.sent",
        "timestamp": "2026-07-01T12:00:00.123Z",
        "data": {
            "prescription_id": str(pid),
            "external_id": None,
            "status": "emailed",
            "previous_status": "sending",
            "occurred_at": "2026-07-01T12:00:00.123Z",
            "region": "A",
            "pharmacy_id": str(pharmacy),
        },
    }


def test_retry_schedule_doubles_from_the_setting_for_about_three_days() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    waits = retry_waits(settings.events_retry_seconds)
    assert waits[:4] == (5.0, 10.0, 20.0, 40.0)
    assert max(waits) == MAX_RETRY_WAIT.total_seconds()
    assert sum(waits) == RETRY_HORIZON.total_seconds()
    assert all(
        b == min(2 * a, MAX_RETRY_WAIT.total_seconds()) for a, b in itertools.pairwise(waits[:-1])
    )
    assert max_attempts(settings) == len(waits) + 1 == 20
    assert wait_after(settings, 1) == 5.0
    assert wait_after(settings, len(waits)) == waits[-1]
    assert wait_after(settings, len(waits) + 1) is None


def test_headers_are_standard_webhooks() -> None:
    secret = new_secret()
    at = datetime.now(UTC)
    body = '{"type":"prescription.queued"}'
    headers = signed_headers(secret, "evt_123", body, at)
    assert headers["webhook-id"] == "evt_123"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {"type": "prescription.queued"}
