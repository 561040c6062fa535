"""A successful send costs at most 6 SQL round trips and 3 transactions of rxroute's own,
and the common path's one-statement writes write nothing when the rows moved under them.

Counted (not timed) around one run of the real job body (``send_prescription``, what the
worker calls) against the sandbox, with :class:`rxroute.observability.sqlcount.SqlCounter`
on the runtime's engine: every execute, the BEGIN psycopg sends by itself, and each COMMIT.
The ledger's rows are checked too, so a send that skipped a write cannot pass as a cheap one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.erx.channel import ErxDeliveryChannel, prescriber_credentials
from rxroute.deliveries import common_path, common_record
from rxroute.deliveries.claims import Claimed
from rxroute.events.tasks import stream_lock
from rxroute.models import (
    Delivery,
    DeliveryAttempt,
    EventDelivery,
    EventEndpoint,
    OutboxEvent,
    PatientNotification,
    Prescription,
)
from rxroute.notifications.tasks import notification_lock
from rxroute.observability.sqlcount import SqlCounter, SqlCounts
from rxroute.prescriptions.history import history
from rxroute.prescriptions.repository import load_for_sending
from rxroute.prescriptions.tasks import send_prescription
from tests.erx_sandbox import Erx, queue_for_erx
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.factories import make_patient, make_pharmacy, make_prescriber, make_prescription

T = TypeVar("T")

MAX_ROUND_TRIPS = 6
MAX_TRANSACTIONS = 3


async def _queued(erx: Erx, session: AsyncSession) -> uuid.UUID:
    patient = await make_patient(session)
    prescriber = await make_prescriber(session, erx.runtime.secret_box)
    prescription = await make_prescription(session, patient, prescriber)
    pharmacy = await make_pharmacy(session, "B", platform_contact_id=5002)
    await queue_for_erx(session, prescription.id, pharmacy)
    await session.commit()
    # Tokens in hand first, as a busy worker has them: logins are not the send's cost.
    async with erx.runtime.sessionmaker() as s:
        loaded = await load_for_sending(s, prescription.id)
        credentials = prescriber_credentials(erx.runtime.secret_box, loaded)
    await erx.client.check_login(credentials)
    return prescription.id


async def counted(erx: Erx, work: Awaitable[T]) -> tuple[T, SqlCounts]:
    """``work``'s result and the SQL it sent through the runtime (engine and queue pool)."""
    counter = SqlCounter()
    counter.attach(erx.runtime.engine)
    counter.install()
    try:
        result = await work
    finally:
        counter.uninstall()
    return result, counter.counts


async def _counted_send(erx: Erx, prescription_id: uuid.UUID) -> tuple[str, SqlCounts]:
    return await counted(erx, send_prescription(str(prescription_id)))


async def test_a_successful_send_stays_within_the_budget(erx: Erx, session: AsyncSession) -> None:
    prescription_id = await _queued(erx, session)

    result, counts = await _counted_send(erx, prescription_id)

    assert result == "issued"
    print(f"one successful send: {counts.as_dict()}")
    assert counts.round_trips <= MAX_ROUND_TRIPS, counts.as_dict()
    assert counts.transactions <= MAX_TRANSACTIONS, counts.as_dict()
    # The load, the claim and the record run on a connection borrowed from the job queue's
    # pool: counted all the same (a budget met by not counting would prove nothing).
    assert counts.statements - counts.pings == 3, counts.as_dict()
    # Everything the ledger promises was written, once.
    async with erx.runtime.sessionmaker() as s:
        prescription = await s.get(Prescription, prescription_id)
        assert prescription is not None
        assert prescription.status == "issued"
        delivery = await s.get(Delivery, prescription.current_delivery_id)
        assert delivery is not None
        assert delivery.state == "live" and delivery.claim is None and delivery.reached_out
        assert delivery.provider_ref and delivery.delivered_at is not None
        assert prescription.provider_prescription_id == delivery.provider_ref
        assert delivery.attempts_in_series == 1
        attempts = list(
            await s.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery.id)
            )
        )
        assert [(a.action, a.outcome, a.attempt) for a in attempts] == [("issue", "succeeded", 1)]
        statuses = [(e.status, e.source) for e in await history(s, prescription_id)]
        assert statuses[-2:] == [("sending", "worker"), ("issued", "worker")]
        events = await s.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.prescription_id == prescription_id, OutboxEvent.status == "issued")
        )
        assert events == 1
        assert erx.runtime.settings.patient_notifications  # the email is part of the cost
        emails = await s.scalar(
            select(func.count())
            .select_from(PatientNotification)
            .where(PatientNotification.prescription_id == prescription_id)
        )
        assert emails == 1


async def test_the_counter_sees_every_transaction(erx: Erx, session: AsyncSession) -> None:
    """The counter itself: a plain two-statement transaction is 4 round trips and 1 tx."""
    counter = SqlCounter()
    counter.attach(erx.runtime.engine)
    counter.install()
    try:
        async with erx.runtime.sessionmaker() as s, s.begin():
            await s.scalar(select(func.count()).select_from(Prescription))
            await s.scalar(select(func.count()).select_from(Delivery))
    finally:
        counter.uninstall()
    counts = counter.counts
    assert (counts.statements - counts.pings, counts.begins, counts.commits) == (2, 1, 1)
    assert counts.transactions == 1
    assert counts.round_trips == 4 + counts.pings


async def test_the_claim_writes_nothing_when_the_delivery_moved_after_the_load(
    erx: Erx, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the load and the claim (here: while the channel prepares), the patient
    cancels: the one-statement claim must not take the withdrawn delivery."""
    prescription_id = await _queued(erx, session)
    prepare = ErxDeliveryChannel.prepare

    async def prepare_then_cancelled(self: Any, *args: Any) -> Any:
        prepared = await prepare(self, *args)
        async with erx.runtime.sessionmaker() as s, s.begin():
            await s.execute(
                update(Delivery)
                .where(Delivery.prescription_id == prescription_id)
                .values(state="withdrawn", closed_reason="cancelled by the patient")
            )
        return prepared

    monkeypatch.setattr(ErxDeliveryChannel, "prepare", prepare_then_cancelled)

    assert await common_path.claim(erx.runtime, prescription_id) is None

    async with erx.runtime.sessionmaker() as s:
        delivery = (
            await s.scalars(select(Delivery).where(Delivery.prescription_id == prescription_id))
        ).one()
        assert (delivery.claim, delivery.attempts_in_series, delivery.reached_out) == (
            None,
            0,
            False,
        )
        assert "sending" not in [e.status for e in await history(s, prescription_id)]


async def test_the_record_writes_nothing_for_a_run_that_lost_its_claim(
    erx: Erx, session: AsyncSession
) -> None:
    """A zombie: another run claimed the delivery while this one was calling out. Its
    one-statement record writes nothing (the general path then decides, under the lock)."""
    prescription_id = await _queued(erx, session)
    claimed = await common_path.claim(erx.runtime, prescription_id)
    assert isinstance(claimed, Claimed) and claimed.record is not None
    async with erx.runtime.sessionmaker() as s, s.begin():
        await s.execute(
            update(Delivery).where(Delivery.id == claimed.delivery_id).values(claim=uuid.uuid4())
        )

    recorded = await common_record.record_delivered(
        erx.runtime, claimed, datetime.now(UTC), ref="SRXZOMBIE", raw_status="issued", token=None
    )

    assert recorded is False
    async with erx.runtime.sessionmaker() as s:
        prescription = await s.get(Prescription, prescription_id)
        assert prescription is not None and prescription.status == "sending"
        delivery = await s.get(Delivery, claimed.delivery_id)
        assert delivery is not None and delivery.state == "pending"
        assert delivery.provider_ref is None
        attempts = await s.scalar(
            select(func.count())
            .select_from(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == claimed.delivery_id)
        )
        assert attempts == 0
        sent_events = await s.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.prescription_id == prescription_id, OutboxEvent.status == "issued")
        )
        assert sent_events == 0


async def test_the_one_statement_record_writes_endpoint_deliveries_and_jobs(
    erx: Erx, session: AsyncSession
) -> None:
    """The outbox event goes to each endpoint that wants it, each with its stream's job, and
    the patient's email gets its job, all from the record statement, within the budget."""
    prescription_id = await _queued(erx, session)
    wants = EventEndpoint(
        id=uuid.uuid4(),
        is_default=False,
        url="https://receiver.example.com/a",
        secret_encrypted=erx.runtime.secret_box.encrypt("whsec_" + "a" * 32),
        description="wants sent",
        event_types=["prescription.sent"],
        active=True,
    )
    ignores = EventEndpoint(
        id=uuid.uuid4(),
        is_default=False,
        url="https://receiver.example.com/b",
        secret_encrypted=erx.runtime.secret_box.encrypt("whsec_" + "b" * 32),
        description="wants dispensed only",
        event_types=["prescription.dispensed"],
        active=True,
    )
    session.add_all([wants, ignores])
    await session.commit()

    result, counts = await _counted_send(erx, prescription_id)

    assert result == "issued"
    assert counts.round_trips <= MAX_ROUND_TRIPS, counts.as_dict()
    assert counts.transactions <= MAX_TRANSACTIONS, counts.as_dict()
    async with erx.runtime.sessionmaker() as s:
        event = (
            await s.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.prescription_id == prescription_id, OutboxEvent.status == "issued"
                )
            )
        ).one()
        assert (event.type, event.previous_status) == ("prescription.sent", "sending")
        endpoints = set(
            await s.scalars(
                select(EventDelivery.endpoint_id).where(EventDelivery.event_id == event.id)
            )
        )
        assert wants.id in endpoints and ignores.id not in endpoints
        locks = set(
            await s.scalars(
                text(
                    "SELECT lock FROM procrastinate_jobs WHERE status = 'todo' "
                    "AND args->>'prescription_id' = :pid"
                ),
                {"pid": str(prescription_id)},
            )
        )
        assert stream_lock(wants.id, prescription_id) in locks
        assert stream_lock(ignores.id, prescription_id) not in locks
        assert notification_lock(prescription_id) in locks
