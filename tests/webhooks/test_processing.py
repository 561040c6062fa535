"""Turning stored webhook events into status history: ``process_event`` and its job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from rxroute.models import InboundWebhookEvent, Prescription
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from rxroute.webhooks.processing import process_event
from rxroute.webhooks.tasks import process_webhook_event
from tests.webhooks.helpers import (
    encode,
    event_payload,
    job_context,
    new_prescription,
    provider_id_for,
    record_issued,
    run_jobs,
    signed_headers,
    status_and_history,
)

T0 = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)


async def _store(runtime: Runtime, payload: dict[str, Any]) -> uuid.UUID:
    async with runtime.sessionmaker() as session, session.begin():
        event = InboundWebhookEvent(
            provider="signaturerx",
            provider_event_id=payload["id"],
            event_type=payload["event"],
            payload=payload,
        )
        session.add(event)
        await session.flush()
        return event.id


async def _process(runtime: Runtime, event_id: uuid.UUID) -> str:
    async with runtime.sessionmaker() as session, session.begin():
        return await process_event(session, event_id)


async def _deliver(runtime: Runtime, payload: dict[str, Any]) -> InboundWebhookEvent:
    """Store and process one event; returns the stored row as it is afterwards."""
    event_id = await _store(runtime, payload)
    await _process(runtime, event_id)
    async with runtime.sessionmaker() as session:
        event = await session.get(InboundWebhookEvent, event_id)
        assert event is not None
        return event


def _for(pid: uuid.UUID, status: str, at: datetime = T0, **extra: Any) -> dict[str, Any]:
    return event_payload(
        status=status,
        provider_id=provider_id_for(pid),
        client_ref_id=str(pid),
        occurred_at=at,
        **extra,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("signed", Status.SIGNED),
        ("printed", Status.PRINTED),
        ("dispensed", Status.DISPENSED),
        ("expired", Status.EXPIRED),
        ("voided", Status.VOIDED),
        (" Dispensed ", Status.DISPENSED),
    ],
)
async def test_provider_status_is_mapped_and_recorded_with_its_own_time(
    db: Runtime, raw: str, expected: Status
) -> None:
    pid = await new_prescription(db)
    payload = _for(pid, raw)
    event = await _deliver(db, payload)
    assert event.state == "processed"
    assert event.prescription_id == pid
    assert event.processed_at is not None
    assert event.error is None
    status, events = await status_and_history(db, pid)
    assert status == expected.value
    last = events[-1]
    assert (last.status, last.source, last.provider_status, last.provider_event_id) == (
        expected.value,
        Source.WEBHOOK.value,
        raw,
        payload["id"],
    )
    assert last.occurred_at == T0
    assert last.recorded_at > T0 - timedelta(days=36500)  # set by the database, not the event
    async with db.sessionmaker() as session:
        prescription = await session.get(Prescription, pid)
        assert prescription is not None and prescription.last_provider_update_at is not None


async def test_occurred_at_falls_back_to_created_at(db: Runtime) -> None:
    pid = await new_prescription(db)
    payload = _for(pid, "signed")
    del payload["data"]["occurred_at"]
    payload["created_at"] = "2030-05-01T10:30:00Z"
    await _deliver(db, payload)
    _, events = await status_and_history(db, pid)
    assert events[-1].occurred_at == datetime(2030, 5, 1, 10, 30, tzinfo=UTC)


async def test_full_lifecycle_in_order(db: Runtime) -> None:
    pid = await new_prescription(db)
    for i, raw in enumerate(("signed", "printed", "dispensed")):
        await _deliver(db, _for(pid, raw, T0 + timedelta(hours=i)))
    status, events = await status_and_history(db, pid)
    assert status == "dispensed"
    assert [(e.status, e.source) for e in events] == [
        ("queued", "patient"),
        ("sending", "worker"),
        ("issued", "worker"),
        ("signed", "webhook"),
        ("printed", "webhook"),
        ("dispensed", "webhook"),
    ]
    assert [e.occurred_at for e in events[3:]] == [T0 + timedelta(hours=i) for i in range(3)]


async def test_late_signed_after_dispensed_is_history_not_status(db: Runtime) -> None:
    pid = await new_prescription(db)
    await _deliver(db, _for(pid, "dispensed", T0 + timedelta(hours=3)))
    late = await _deliver(db, _for(pid, "signed", T0))
    assert late.state == "processed"
    status, events = await status_and_history(db, pid)
    assert status == "dispensed"
    signed = [e for e in events if e.status == "signed"]
    assert len(signed) == 1
    assert signed[0].occurred_at == T0
    assert signed[0].source == "webhook"
    # Recorded after dispensed (seq), though it happened before it (occurred_at).
    dispensed = next(e for e in events if e.status == "dispensed")
    assert signed[0].seq > dispensed.seq
    assert signed[0].occurred_at < dispensed.occurred_at


async def test_final_status_never_moves_to_another_final(db: Runtime) -> None:
    pid = await new_prescription(db)
    await _deliver(db, _for(pid, "voided"))
    await _deliver(db, _for(pid, "expired"))
    status, events = await status_and_history(db, pid)
    assert status == "voided"
    assert [e.status for e in events][-2:] == ["voided", "expired"]


@pytest.mark.parametrize(
    "data",
    [
        {"prescription_id": "SRXNOSUCHTHING", "client_ref_id": None},
        {"prescription_id": "SRXNOSUCHTHING", "client_ref_id": str(uuid.uuid4())},
        {"prescription_id": None, "client_ref_id": "not-a-uuid"},
        {},
    ],
)
async def test_event_for_unknown_prescription_is_kept_and_marked(
    db: Runtime, data: dict[str, Any]
) -> None:
    bystander = await new_prescription(db)
    payload = event_payload(status="dispensed", occurred_at=T0)
    payload["data"] = {"status": "dispensed", "occurred_at": T0.isoformat(), **data}
    event = await _deliver(db, payload)
    assert event.state == "unknown_prescription"
    assert event.error
    assert event.prescription_id is None
    assert event.payload == payload
    assert event.processed_at is not None
    status, _ = await status_and_history(db, bystander)
    assert status == "issued"


async def test_client_ref_of_a_prescription_issued_under_another_id_is_not_applied(
    db: Runtime,
) -> None:
    """A second copy on the platform (a duplicate issue) must not move ours."""
    pid = await new_prescription(db)
    payload = event_payload(
        status="voided", provider_id="SRXOTHERCOPY01", client_ref_id=str(pid), occurred_at=T0
    )
    event = await _deliver(db, payload)
    assert event.state == "unknown_prescription"
    assert event.error is not None and "SRXOTHERCOPY01" in event.error
    status, events = await status_and_history(db, pid)
    assert status == "issued"
    assert "voided" not in [e.status for e in events]


@pytest.mark.parametrize(
    ("change", "error_fragment"),
    [
        ({"event": "prescription.note_added"}, "not handled"),
        ({"data": {"status": "collected"}}, "unknown provider status"),
        ({"data": {"status": None}}, "unknown provider status"),
        ({"data": "dispensed"}, "data"),
    ],
)
async def test_unknown_event_type_or_status_is_kept_and_marked(
    db: Runtime, change: dict[str, Any], error_fragment: str
) -> None:
    pid = await new_prescription(db)
    payload = _for(pid, "dispensed")
    for key, value in change.items():
        if isinstance(value, dict):
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    event = await _deliver(db, payload)
    assert event.state == "unknown_type"
    assert event.error is not None and error_fragment in event.error
    assert event.payload == payload
    status, events = await status_and_history(db, pid)
    assert status == "issued"
    assert len(events) == 3


async def test_processing_twice_is_a_no_op(db: Runtime) -> None:
    pid = await new_prescription(db)
    event_id = await _store(db, _for(pid, "dispensed"))
    assert await _process(db, event_id) == "processed"
    _, before = await status_and_history(db, pid)
    assert await _process(db, event_id) == "processed"
    _, after = await status_and_history(db, pid)
    assert [e.id for e in after] == [e.id for e in before]
    assert await _process(db, uuid.uuid4()) == "missing"


async def test_same_status_under_a_new_event_id_is_recorded_once(db: Runtime) -> None:
    pid = await new_prescription(db)
    first = await _deliver(db, _for(pid, "signed"))
    second = await _deliver(db, _for(pid, "signed", T0 + timedelta(minutes=5)))
    assert first.state == second.state == "processed"
    _, events = await status_and_history(db, pid)
    signed = [e for e in events if e.status == "signed"]
    assert len(signed) == 1
    assert signed[0].provider_event_id == first.provider_event_id


async def test_webhook_before_the_send_job_recorded_issued(db: Runtime) -> None:
    """The platform signs at once; its webhook beats our job's own ``issued``."""
    pid = await new_prescription(db, up_to=Status.SENDING)
    provider_id = "SRXRACE0000001"
    await _deliver(
        db,
        event_payload(
            status="signed", provider_id=provider_id, client_ref_id=str(pid), occurred_at=T0
        ),
    )
    async with db.sessionmaker() as session:
        prescription = await session.get(Prescription, pid)
        assert prescription is not None
        assert prescription.status == "signed"
        assert prescription.provider_prescription_id == provider_id
    # "issued" is implied by "signed" and recorded with it, so the history skips nothing;
    # the send job's own answer then adds nothing and moves nothing.
    async with db.sessionmaker() as session, session.begin():
        await record_issued(session, pid, provider_id)
    status, events = await status_and_history(db, pid)
    assert status == "signed"
    assert [e.status for e in events] == ["queued", "sending", "issued", "signed"]
    assert events[2].detail == "implied by signed"
    # Later events find it by the platform id it learned from the webhook.
    dispensed = await _deliver(
        db, event_payload(status="dispensed", provider_id=provider_id, occurred_at=T0)
    )
    assert dispensed.state == "processed"
    status, _ = await status_and_history(db, pid)
    assert status == "dispensed"


async def test_the_task_processes_the_event(db: Runtime) -> None:
    pid = await new_prescription(db)
    event_id = await _store(db, _for(pid, "printed"))
    assert await process_webhook_event(job_context(), event_id=str(event_id)) == "processed"
    status, _ = await status_and_history(db, pid)
    assert status == "printed"


async def test_received_webhook_processed_by_the_worker(
    client: httpx.AsyncClient, db: Runtime
) -> None:
    pid = await new_prescription(db)
    secret = db.settings.webhook_secret.get_secret_value()
    for raw in ("dispensed", "signed", "printed"):
        body = encode(_for(pid, raw))
        response = await client.post(
            "/webhooks/erx", content=body, headers=signed_headers(body, secret)
        )
        assert response.status_code == 200
    status, _ = await status_and_history(db, pid)
    assert status == "issued", "processing must not happen inside the request"
    await run_jobs(db)
    status, events = await status_and_history(db, pid)
    assert status == "dispensed"
    assert sorted(e.status for e in events if e.source == "webhook") == [
        "dispensed",
        "printed",
        "signed",
    ]
    async with db.sessionmaker() as session:
        states = list(await session.scalars(select(InboundWebhookEvent.state)))
    assert states == ["processed"] * 3
