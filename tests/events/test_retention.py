"""Delivered events are purged after RXROUTE_EVENTS_RETENTION_DAYS; undelivered ones stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from rxroute.events.receiver import EventReceiver
from rxroute.events.tasks import purge_once
from rxroute.models import EventDelivery, OutboxEvent
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime
from tests.events.conftest import add_endpoint, queued_prescription
from tests.factories import observe_current


async def test_purge_keeps_recent_and_undelivered_events(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
        old_delivered = await queued_prescription(session, runtime)
        old_undelivered = await queued_prescription(session, runtime)
        recent = await queued_prescription(session, runtime)
        await observe_current(session, recent, Status.ISSUED, ref="SRX0009")
    days = runtime.settings.events_retention_days
    long_ago = datetime.now(UTC) - timedelta(days=days, hours=1)
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(update(EventDelivery).values(state="delivered"))
        await session.execute(
            update(EventDelivery)
            .where(EventDelivery.prescription_id == old_undelivered)
            .values(state="failing")
        )
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.prescription_id.in_([old_delivered, old_undelivered]))
            .values(created_at=long_ago)
        )
    assert await purge_once(runtime) == 1
    async with runtime.sessionmaker() as session:
        left = (await session.scalars(select(OutboxEvent.prescription_id))).all()
        kept_deliveries = (await session.scalars(select(EventDelivery.prescription_id))).all()
    assert sorted(map(str, left)) == sorted(map(str, [old_undelivered, recent, recent]))
    assert old_delivered not in kept_deliveries  # its deliveries went with it
    assert await purge_once(runtime) == 0
