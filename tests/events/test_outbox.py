"""The outbox: one event per change of the current status, in the same transaction."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select

from rxroute.deliveries import ledger
from rxroute.events.catalogue import EventType
from rxroute.events.receiver import EventReceiver
from rxroute.jobs import queue
from rxroute.models import (
    EventDelivery,
    EventEndpoint,
    OutboxEvent,
    Patient,
    Pharmacy,
    Prescription,
)
from rxroute.prescriptions.history import lock_prescription, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from tests.events.conftest import (
    add_endpoint,
    deliveries,
    events_of,
    job_count,
    queued_prescription,
    ready_prescription,
)
from tests.factories import make_pharmacy, observe_current, queue_delivery

DATA_KEYS = {
    "prescription_id",
    "external_id",
    "status",
    "previous_status",
    "occurred_at",
    "region",
    "pharmacy_id",
}


async def test_every_move_writes_one_event_with_the_exact_body(fast_retries: Runtime) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        prescription = await ready_prescription(session, runtime)
        prescription.external_id = f"ext-{uuid.uuid4().hex[:8]}"
        pid = prescription.id
        await ledger.open_delivery(
            session,
            await lock_prescription(session, pid),
            pharmacy=await session.get_one(Pharmacy, prescription.pharmacy_id),
            region="B",
            channel="erx",
            source=Source.PATIENT,
            actor=None,
            reason=None,
        )
        await record_status(session, pid, Status.SENDING, source=Source.WORKER)
        await observe_current(session, pid, Status.SIGNED, ref="SRX0001", source=Source.WEBHOOK)
        await observe_current(session, pid, Status.DISPENSED, source=Source.WEBHOOK)
        # A late fact moves nothing, so it is no event.
        await observe_current(session, pid, Status.PRINTED, source=Source.WEBHOOK)
    async with runtime.sessionmaker() as session:
        events = await events_of(session, pid)
        loaded = await session.get_one(Prescription, pid)
    # sending is not an event; "issued" is implied by "signed" and recorded (and sent) first.
    assert [(e.type, e.previous_status, e.status) for e in events] == [
        ("prescription.queued", "draft", "queued"),
        ("prescription.sent", "sending", "issued"),
        ("prescription.signed", "issued", "signed"),
        ("prescription.dispensed", "signed", "dispensed"),
    ]
    for event in events:
        body = json.loads(event.body)
        assert set(body) == {"type", "timestamp", "data"}
        assert set(body["data"]) == DATA_KEYS
        assert body["type"] == event.type
        assert body["data"] == {
            "prescription_id": str(pid),
            "external_id": loaded.external_id,
            "status": event.status,
            "previous_status": event.previous_status,
            "occurred_at": body["data"]["occurred_at"],
            "region": "B",
            "pharmacy_id": str(loaded.pharmacy_id),
        }
        assert body["timestamp"].endswith("Z") and body["data"]["occurred_at"].endswith("Z")
    # No endpoint, no deliveries and no jobs: the events are kept all the same.
    assert await deliveries(runtime) == []
    assert await job_count(runtime) == 0


async def test_no_patient_details_in_an_event(fast_retries: Runtime) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        pid = await queued_prescription(session, runtime)
        prescription = await session.get_one(Prescription, pid)
        patient = await session.get_one(Patient, prescription.patient_id)
        words = [patient.first_name, patient.last_name, patient.email, patient.postcode]
        words += [patient.nhs_number or "", str(patient.date_of_birth), "Semaglutide"]
    async with runtime.sessionmaker() as session:
        (event,) = await events_of(session, pid)
    for word in words:
        assert word and word not in event.body


async def test_a_rollback_writes_no_event_and_sends_nothing(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
        prescription = await ready_prescription(session, runtime)
        pid = prescription.id
    async with runtime.sessionmaker() as session:
        transaction = await session.begin()
        await queue_delivery(session, pid)
        assert len(await events_of(session, pid)) == 1  # written, inside the transaction
        assert await session.scalar(select(func.count()).select_from(EventDelivery)) == 1
        await transaction.rollback()
    async with runtime.sessionmaker() as session:
        assert await events_of(session, pid) == []
    assert await deliveries(runtime) == []
    assert await job_count(runtime) == 0
    await queue.run_worker_async(
        concurrency=2, wait=False, install_signal_handlers=False, listen_notify=False
    )
    assert receiver.events() == []
    assert receiver.refused == 0


async def test_reroute_is_its_own_event_and_a_retry_is_queued_again(
    fast_retries: Runtime,
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        pid = await queued_prescription(session, runtime)
        await observe_current(session, pid, Status.ISSUED, ref="SRX0002")
        other = await make_pharmacy(session, "B", platform_contact_id=5002)
        await ledger.open_delivery(
            session,
            await lock_prescription(session, pid),
            pharmacy=other,
            region="B",
            channel="erx",
            source=Source.SUPPORT,
            actor=None,
            reason="pharmacy closed",
        )
        prescription = await lock_prescription(session, pid)
        delivery = await ledger.current_delivery(session, prescription)
        assert delivery is not None and delivery.number == 2
        await ledger.fail(session, prescription, delivery, "platform refused")
        await ledger.start_series(
            session, prescription, delivery, source=Source.SUPPORT, actor=None, detail="retry"
        )
    async with runtime.sessionmaker() as session:
        events = await events_of(session, pid)
    assert [(e.type, e.previous_status, e.status) for e in events] == [
        ("prescription.queued", "draft", "queued"),
        ("prescription.sent", "queued", "issued"),
        # The new delivery resets the cached status; the event still says where it came from.
        ("prescription.rerouted", "issued", "queued"),
        ("prescription.failed", "queued", "failed"),
        ("prescription.queued", "failed", "queued"),
    ]
    body = json.loads(events[2].body)
    assert body["data"]["pharmacy_id"] == str(other.id)


async def test_cancel_before_any_delivery_is_a_cancelled_event(fast_retries: Runtime) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        prescription = await ready_prescription(session, runtime)
        pid = prescription.id
        await record_status(session, pid, Status.VOIDED, source=Source.PATIENT)
    async with runtime.sessionmaker() as session:
        (event,) = await events_of(session, pid)
    assert (event.type, event.previous_status) == (EventType.CANCELLED.value, "draft")


async def test_event_type_filter_and_disabled_endpoints(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        everything = await add_endpoint(session, runtime, receiver.events_url, secret)
        dispensed_only = await add_endpoint(
            session,
            runtime,
            receiver.events_url,
            secret,
            event_types=[EventType.DISPENSED.value, EventType.CANCELLED.value],
        )
        disabled = await add_endpoint(session, runtime, receiver.events_url, secret, active=False)
        pid = await queued_prescription(session, runtime)
        await observe_current(session, pid, Status.ISSUED, ref="SRX0003")
        await observe_current(session, pid, Status.DISPENSED)
    by_endpoint: dict[uuid.UUID, list[str]] = {}
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(EventDelivery.endpoint_id, OutboxEvent.type)
            .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
            .order_by(EventDelivery.event_seq)
        )
        for endpoint_id, event_type in rows:
            by_endpoint.setdefault(endpoint_id, []).append(event_type)
    assert by_endpoint == {
        everything.id: ["prescription.queued", "prescription.sent", "prescription.dispensed"],
        dispensed_only.id: ["prescription.dispensed"],
    }
    assert disabled.id not in by_endpoint
    # One job per (endpoint, prescription) per event that endpoint wants.
    assert await job_count(runtime) == 4


async def test_default_endpoint_follows_the_settings(
    fast_retries: Runtime, receiver: EventReceiver
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        pid = await queued_prescription(session, runtime)
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(EventEndpoint)) == 0
    runtime.settings = runtime.settings.model_copy(update={"events_url": receiver.events_url})
    async with runtime.sessionmaker() as session, session.begin():
        await observe_current(session, pid, Status.ISSUED, ref="SRX0004")
        await observe_current(session, pid, Status.SIGNED)
    async with runtime.sessionmaker() as session:
        defaults = list(await session.scalars(select(EventEndpoint)))
        assert [(e.is_default, e.url, e.secret_encrypted) for e in defaults] == [(True, None, None)]
    assert [d.endpoint_id for d in await deliveries(runtime)] == [defaults[0].id] * 2
