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
from rxroute.models import Prescription, PrescriptionStatusEvent
from rxroute.prescriptions.history import history, record_note, record_status
from rxroute.prescriptions.lifecycle import (
    PROVIDER_STATUSES,
    InvalidTransition,
    Source,
    Status,
    derive_status,
)
from rxroute.runtime import Runtime
from tests.factories import make_patient, make_prescriber, make_prescription


async def _new_prescription(session: AsyncSession, box: SecretBox) -> uuid.UUID:
    patient = await make_patient(session)
    prescriber = await make_prescriber(session, box)
    prescription = await make_prescription(session, patient, prescriber)
    return prescription.id


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

    recorded = await record_status(session, pid, Status.QUEUED, source=Source.PATIENT, actor="u1")
    assert recorded.appended and recorded.moved
    assert recorded.status is Status.QUEUED
    assert await _cached_status(session, pid) == "queued"

    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    await record_status(session, pid, Status.ISSUED, source=Source.WORKER)
    events = await history(session, pid)
    assert [e.status for e in events] == ["queued", "sending", "issued"]
    assert [e.source for e in events] == ["patient", "worker", "worker"]
    assert events[0].actor == "u1"
    assert events[0].seq < events[1].seq < events[2].seq
    assert await _cached_status(session, pid) == "issued"


async def test_duplicate_platform_status_is_not_appended_twice(
    session: AsyncSession, db: Runtime
) -> None:
    pid = await _new_prescription(session, db.secret_box)
    for status in (Status.QUEUED, Status.SENDING, Status.ISSUED):
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
    events = await history(session, pid)
    assert [e.status for e in events].count("signed") == 1
    assert await _event_count(session, pid) == 4


async def test_late_signed_after_dispensed_is_recorded_without_moving(
    session: AsyncSession, db: Runtime
) -> None:
    pid = await _new_prescription(session, db.secret_box)
    await record_status(session, pid, Status.QUEUED, source=Source.PATIENT)
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
    pid = await _new_prescription(session, db.secret_box)
    await record_status(session, pid, Status.QUEUED, source=Source.PATIENT)
    await record_status(session, pid, Status.SENDING, source=Source.WORKER)
    await record_status(session, pid, Status.DISPENSED, source=Source.WEBHOOK)
    late = await record_status(session, pid, Status.ISSUED, source=Source.WORKER)
    assert late.appended and not late.moved
    assert await _cached_status(session, pid) == "dispensed"


@pytest.mark.parametrize("source", [Source.PATIENT, Source.SUPPORT, Source.WORKER])
async def test_forbidden_command_raises_and_appends_nothing(
    session: AsyncSession, db: Runtime, source: Source
) -> None:
    pid = await _new_prescription(session, db.secret_box)
    await record_status(session, pid, Status.QUEUED, source=Source.PATIENT)
    await record_status(session, pid, Status.EMAILED, source=Source.WORKER)
    await record_status(session, pid, Status.DISPENSED, source=Source.PHARMACY)
    before = await _event_count(session, pid)
    with pytest.raises(InvalidTransition):
        await record_status(session, pid, Status.QUEUED, source=source)
    assert await _event_count(session, pid) == before
    assert await _cached_status(session, pid) == "dispensed"


STEPS = st.lists(
    st.tuples(st.sampled_from(list(Status)), st.sampled_from(list(Source))),
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
    db: Runtime, steps: list[tuple[Status, Source]]
) -> None:
    async with db.sessionmaker() as session:
        try:
            pid = await _new_prescription(session, db.secret_box)
            for status, source in steps:
                with contextlib.suppress(InvalidTransition):
                    await record_status(session, pid, status, source=source)
            events = await history(session, pid)
            derived = derive_status(Status(e.status) for e in events)
            assert await _cached_status(session, pid) == derived.value
            provider = [e.status for e in events if Status(e.status) in PROVIDER_STATUSES]
            assert len(provider) == len(set(provider)), "a platform status recorded twice"
        finally:
            await session.rollback()


async def _committed_event(db: Runtime) -> tuple[uuid.UUID, str]:
    async with db.sessionmaker() as session, session.begin():
        pid = await _new_prescription(session, db.secret_box)
        await record_status(session, pid, Status.QUEUED, source=Source.PATIENT, detail="sent")
        events = await history(session, pid)
    return events[0].id, "queued"


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
    pid = await _new_prescription(session, db.secret_box)
    for status in (Status.QUEUED, Status.SENDING, Status.EMAILED):
        await record_status(session, pid, status, source=Source.WORKER)

    await record_note(session, pid, source=Source.SUPPORT, actor="support-1", detail="resent")

    events = await history(session, pid)
    assert [(e.status, e.source, e.actor) for e in events][-1] == (
        "emailed",
        "support",
        "support-1",
    )
    assert await _cached_status(session, pid) == "emailed"
    assert derive_status(Status(e.status) for e in events) is Status.EMAILED


async def test_a_note_is_refused_on_a_platform_status(session: AsyncSession, db: Runtime) -> None:
    pid = await _new_prescription(session, db.secret_box)
    for status in (Status.QUEUED, Status.SENDING, Status.ISSUED):
        await record_status(session, pid, status, source=Source.WORKER)

    with pytest.raises(ValueError, match="issued"):
        await record_note(session, pid, source=Source.SUPPORT, actor="support-1", detail="x")
    assert await _event_count(session, pid) == 3
