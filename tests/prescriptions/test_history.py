"""Recording status changes on the real database: append-only history, cached status."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.crypto import SecretBox
from rxroute.models import Delivery, Prescription, PrescriptionStatusEvent
from rxroute.prescriptions.history import history, record_note, record_status
from rxroute.prescriptions.lifecycle import (
    FAR_SIDE_STATUSES,
    InvalidTransition,
    Source,
    Status,
    derive_status,
)
from rxroute.runtime import Runtime
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    queue_delivery,
)


async def _new_prescription(session: AsyncSession, box: SecretBox, region: str = "B") -> uuid.UUID:
    """A draft with its region, channel and pharmacy chosen, but no delivery yet."""
    patient = await make_patient(session)
    prescriber = await make_prescriber(session, box)
    pharmacy = await make_pharmacy(session, region)
    prescription = await make_prescription(
        session,
        patient,
        prescriber,
        region=region,
        channel="email" if region == "A" else "erx",
        pharmacy_id=pharmacy.id,
    )
    return prescription.id


async def _queued(
    session: AsyncSession, box: SecretBox, region: str = "B", actor: str | None = None
) -> tuple[uuid.UUID, Delivery]:
    """A prescription with its first delivery queued, as a send request records it."""
    pid = await _new_prescription(session, box, region)
    delivery = await queue_delivery(session, pid, actor=actor)
    return pid, delivery


async def _cached_status(session: AsyncSession, prescription_id: uuid.UUID) -> str:
    value = await session.scalar(
        select(Prescription.status).where(Prescription.id == prescription_id)
    )
    assert value is not None
    return value


async def _event_count(session: AsyncSession, prescription_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(PrescriptionStatusEvent)
        .where(PrescriptionStatusEvent.prescription_id == prescription_id)
    )
    return int(count or 0)


async def test_record_status_appends_and_moves(session: AsyncSession, db: Runtime) -> None:
    pid = await _new_prescription(session, db.secret_box)
    assert await _cached_status(session, pid) == "draft"

    delivery = await queue_delivery(session, pid, actor="u1")
    assert await _cached_status(session, pid) == "queued"

    sending = await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    assert sending.appended and sending.moved and sending.status is Status.SENDING
    await record_status(session, pid, Status.ISSUED, source=Source.WORKER)
    events = await history(session, pid)
    assert [e.status for e in events] == ["queued", "sending", "issued"]
    assert [e.source for e in events] == ["patient", "worker", "worker"]
    assert events[0].actor == "u1"
    assert events[0].seq < events[1].seq < events[2].seq
    # Every fact is about the current delivery (the default when none is named).
    assert {e.delivery_id for e in events} == {delivery.id}
    assert await _cached_status(session, pid) == "issued"


async def test_duplicate_platform_status_is_not_appended_twice(
    session: AsyncSession, db: Runtime
) -> None:
    pid, delivery = await _queued(session, db.secret_box)
    for status in (Status.SENDING, Status.ISSUED):
        await record_status(session, pid, status, source=Source.WORKER)
    first = await record_status(
        session, pid, Status.SIGNED, source=Source.WEBHOOK, provider_event_id="evt-1"
    )
    assert first.appended and first.moved
    again = await record_status(
        session, pid, Status.SIGNED, source=Source.POLL, provider_event_id="evt-2"
    )
    assert not again.appended and not again.moved
    assert again.status is Status.SIGNED
    # Naming the delivery explicitly is the same fact: still not appended.
    named = await record_status(
        session, pid, Status.SIGNED, source=Source.WEBHOOK, delivery_id=delivery.id
    )
    assert not named.appended
    events = await history(session, pid)
    assert [e.status for e in events].count("signed") == 1
    assert await _event_count(session, pid) == 4


async def test_each_delivery_has_its_own_far_side_facts(session: AsyncSession, db: Runtime) -> None:
    """Once per delivery, not once per prescription: a re-routed copy is issued again."""
    pid, first = await _queued(session, db.secret_box)
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    await record_status(session, pid, Status.ISSUED, source=Source.WORKER)
    second = await queue_delivery(session, pid, source=Source.SUPPORT)
    assert second.id != first.id and second.number == 2
    assert await _cached_status(session, pid) == "queued"
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    issued_again = await record_status(session, pid, Status.ISSUED, source=Source.WORKER)
    assert issued_again.appended and issued_again.moved
    events = await history(session, pid)
    assert [(e.status, e.delivery_id) for e in events] == [
        ("queued", first.id),
        ("sending", first.id),
        ("issued", first.id),
        ("queued", second.id),
        ("sending", second.id),
        ("issued", second.id),
    ]


async def test_facts_about_a_replaced_delivery_do_not_move_the_status(
    session: AsyncSession, db: Runtime
) -> None:
    pid, first = await _queued(session, db.secret_box)
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    await record_status(session, pid, Status.ISSUED, source=Source.WORKER)
    await queue_delivery(session, pid, source=Source.SUPPORT)  # re-routed: delivery 2 queued
    for status in (Status.SIGNED, Status.DISPENSED):
        late = await record_status(
            session, pid, status, source=Source.WEBHOOK, delivery_id=first.id
        )
        # Kept in the history against the old delivery, but the status is the new one's.
        assert late.appended and not late.moved
        assert late.status is Status.QUEUED
    assert await _cached_status(session, pid) == "queued"
    events = await history(session, pid)
    assert [(e.status, e.delivery_id) for e in events][-2:] == [
        ("signed", first.id),
        ("dispensed", first.id),
    ]
    # A local fact from a worker about the old delivery is dropped, not recorded.
    stale = await record_status(
        session, pid, Status.FAILED, source=Source.WORKER, delivery_id=first.id
    )
    assert not stale.appended and not stale.moved
    assert await _event_count(session, pid) == len(events)


async def test_late_signed_after_dispensed_is_recorded_without_moving(
    session: AsyncSession, db: Runtime
) -> None:
    pid, _ = await _queued(session, db.secret_box)
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    dispensed_at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    signed_at = dispensed_at - timedelta(hours=2)
    await record_status(
        session, pid, Status.DISPENSED, source=Source.WEBHOOK, occurred_at=dispensed_at
    )
    late = await record_status(
        session, pid, Status.SIGNED, source=Source.WEBHOOK, occurred_at=signed_at
    )
    assert late.appended
    assert not late.moved
    assert late.status is Status.DISPENSED
    assert await _cached_status(session, pid) == "dispensed"
    events = await history(session, pid)
    assert [e.status for e in events] == ["queued", "sending", "dispensed", "signed"]
    assert events[-1].occurred_at == signed_at
    assert events[-2].occurred_at == dispensed_at


async def test_worker_relaying_issued_after_dispensed_records_without_moving(
    session: AsyncSession, db: Runtime
) -> None:
    pid, _ = await _queued(session, db.secret_box)
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    await record_status(session, pid, Status.DISPENSED, source=Source.WEBHOOK)
    late = await record_status(session, pid, Status.ISSUED, source=Source.WORKER)
    assert late.appended and not late.moved
    assert await _cached_status(session, pid) == "dispensed"


async def _dispensed_region_a(session: AsyncSession, box: SecretBox) -> uuid.UUID:
    pid, _ = await _queued(session, box, region="A")
    await record_status(session, pid, Status.EMAILED, source=Source.WORKER)
    await record_status(session, pid, Status.DISPENSED, source=Source.PHARMACY)
    return pid


@pytest.mark.parametrize("source", [Source.PATIENT, Source.SUPPORT])
async def test_forbidden_command_raises_and_appends_nothing(
    session: AsyncSession, db: Runtime, source: Source
) -> None:
    pid = await _dispensed_region_a(session, db.secret_box)
    before = await _event_count(session, pid)
    with pytest.raises(InvalidTransition):
        await record_status(session, pid, Status.QUEUED, source=source)
    assert await _event_count(session, pid) == before
    assert await _cached_status(session, pid) == "dispensed"


@pytest.mark.parametrize("status", [Status.QUEUED, Status.SENDING, Status.FAILED])
async def test_a_workers_overtaken_local_fact_is_dropped(
    session: AsyncSession, db: Runtime, status: Status
) -> None:
    """Our own worker is not a command: a local fact that no longer applies is not an error
    (the job may run after a pharmacy confirmed), and it leaves no line in the history."""
    pid = await _dispensed_region_a(session, db.secret_box)
    before = await _event_count(session, pid)
    dropped = await record_status(session, pid, status, source=Source.WORKER)
    assert not dropped.appended and not dropped.moved
    assert dropped.status is Status.DISPENSED
    assert await _event_count(session, pid) == before
    assert await _cached_status(session, pid) == "dispensed"


#: A step: a status fact from a source, or ``None`` for a re-route (a new delivery).
STEPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(list(Status)), st.sampled_from(list(Source))),
        st.none(),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS)
async def test_cached_status_equals_derived_history(
    db: Runtime, steps: list[tuple[Status, Source] | None]
) -> None:
    """Whatever arrives in whatever order, the cached status is the one derived from the
    current delivery's facts, and no far-side fact is recorded twice for one delivery."""
    async with db.sessionmaker() as session:
        try:
            pid, _ = await _queued(session, db.secret_box)
            for step in steps:
                if step is None:
                    await queue_delivery(session, pid, source=Source.SUPPORT)
                    continue
                status, source = step
                with contextlib.suppress(InvalidTransition):
                    await record_status(session, pid, status, source=source)
            prescription = await session.get(Prescription, pid, populate_existing=True)
            assert prescription is not None
            events = await history(session, pid)
            assert all(e.delivery_id is not None for e in events)
            current = [e for e in events if e.delivery_id == prescription.current_delivery_id]
            derived = derive_status(Status(e.status) for e in current)
            assert prescription.status == derived.value
            far_side = [
                (e.delivery_id, e.status) for e in events if Status(e.status) in FAR_SIDE_STATUSES
            ]
            assert len(far_side) == len(set(far_side)), "a far-side fact recorded twice"
        finally:
            await session.rollback()


async def _committed_event(db: Runtime) -> tuple[uuid.UUID, str]:
    async with db.sessionmaker() as session, session.begin():
        pid, _ = await _queued(session, db.secret_box)
        await record_status(session, pid, Status.SENDING, source=Source.WORKER, detail="sent")
        events = await history(session, pid)
    return events[-1].id, "sending"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE prescription_status_events SET status = 'dispensed' WHERE id = :id",
        "UPDATE prescription_status_events SET detail = 'rewritten' WHERE id = :id",
        "DELETE FROM prescription_status_events WHERE id = :id",
    ],
)
async def test_history_rows_cannot_be_changed(db: Runtime, statement: str) -> None:
    event_id, status = await _committed_event(db)
    async with db.engine.connect() as connection:
        with pytest.raises(DBAPIError, match="append-only"):
            await connection.execute(text(statement), {"id": event_id})
        await connection.rollback()
    async with db.engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT status, detail FROM prescription_status_events WHERE id = :id"),
                {"id": event_id},
            )
        ).one()
    assert tuple(row) == (status, "sent")


async def test_a_note_is_history_that_moves_nothing(session: AsyncSession, db: Runtime) -> None:
    pid, _ = await _queued(session, db.secret_box, region="A")
    for status in (Status.SENDING, Status.EMAILED):
        await record_status(session, pid, status, source=Source.WORKER)

    await record_note(session, pid, source=Source.SUPPORT, actor="support-1", detail="resent")

    events = await history(session, pid)
    note = events[-1]
    assert (note.status, note.source, note.actor, note.detail) == (
        "emailed",
        "support",
        "support-1",
        "resent",
    )
    assert note.delivery_id is None  # about the prescription, not a fact of a delivery
    assert await _cached_status(session, pid) == "emailed"
    assert derive_status(Status(e.status) for e in events) is Status.EMAILED


async def test_a_note_does_not_count_as_a_far_side_fact(session: AsyncSession, db: Runtime) -> None:
    """A note repeating "issued" belongs to no delivery, so it neither blocks nor fakes the
    delivery's own once-only facts."""
    pid, delivery = await _queued(session, db.secret_box)
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    await record_status(session, pid, Status.ISSUED, source=Source.WORKER)

    await record_note(session, pid, source=Source.SUPPORT, actor="support-1", detail="called")
    await record_note(session, pid, source=Source.SUPPORT, actor="support-1", detail="again")

    issued_again = await record_status(session, pid, Status.ISSUED, source=Source.WEBHOOK)
    assert not issued_again.appended
    signed = await record_status(session, pid, Status.SIGNED, source=Source.WEBHOOK)
    assert signed.appended and signed.moved
    events = await history(session, pid)
    assert [(e.status, e.delivery_id) for e in events] == [
        ("queued", delivery.id),
        ("sending", delivery.id),
        ("issued", delivery.id),
        ("issued", None),
        ("issued", None),
        ("signed", delivery.id),
    ]
    assert await _cached_status(session, pid) == "signed"
