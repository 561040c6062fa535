"""Events out: a real receiver on 127.0.0.1, endpoints pointing at it, and the real worker.

The receiver is :class:`rxroute.events.receiver.EventReceiver` on a free port (its own
thread, TCP_NODELAY); it verifies every request with the ``standardwebhooks`` package.
Retries are test-sized (``RXROUTE_EVENTS_RETRY_SECONDS`` 0.05) for the duration of a test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.events.receiver import EventReceiver
from rxroute.events.secrets import new_secret
from rxroute.models import EventDelivery, EventEndpoint, OutboxEvent, Prescription
from rxroute.runtime import Runtime
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    queue_delivery,
)

RETRY_SECONDS = 0.05


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def receiver(secret: str) -> Iterator[EventReceiver]:
    with EventReceiver(secret, port=0) as started:
        yield started


@pytest.fixture
async def fast_retries(db: Runtime) -> AsyncIterator[Runtime]:
    """The runtime with test-sized retries (and no default endpoint) for one test."""
    original = db.settings
    db.settings = original.model_copy(
        update={"events_retry_seconds": RETRY_SECONDS, "events_url": ""}
    )
    try:
        yield db
    finally:
        db.settings = original


async def add_endpoint(
    session: AsyncSession,
    runtime: Runtime,
    url: str,
    secret: str,
    *,
    event_types: list[str] | None = None,
    active: bool = True,
) -> EventEndpoint:
    """An endpoint as admin adds it: its own URL and encrypted secret."""
    endpoint = EventEndpoint(
        id=uuid.uuid4(),
        is_default=False,
        url=url,
        secret_encrypted=runtime.secret_box.encrypt(secret),
        description="test endpoint",
        event_types=event_types or [],
        active=active,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def ready_prescription(
    session: AsyncSession, runtime: Runtime, *, region: str = "B"
) -> Prescription:
    """A draft with its region, channel and pharmacy chosen, ready to be queued."""
    patient = await make_patient(session)
    prescriber = await make_prescriber(session, runtime.secret_box)
    pharmacy = await make_pharmacy(session, region)
    return await make_prescription(
        session,
        patient,
        prescriber,
        region=region,
        channel="erx" if region == "B" else "email",
        pharmacy_id=pharmacy.id,
    )


async def queued_prescription(session: AsyncSession, runtime: Runtime) -> uuid.UUID:
    prescription = await ready_prescription(session, runtime)
    await queue_delivery(session, prescription.id)
    return prescription.id


async def events_of(session: AsyncSession, prescription_id: uuid.UUID) -> list[OutboxEvent]:
    return list(
        await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.prescription_id == prescription_id)
            .order_by(OutboxEvent.seq)
        )
    )


async def deliveries(runtime: Runtime) -> list[EventDelivery]:
    async with runtime.sessionmaker() as session:
        return list(await session.scalars(select(EventDelivery).order_by(EventDelivery.event_seq)))


async def job_count(runtime: Runtime, task: str = "deliver_events") -> int:
    async with runtime.sessionmaker() as session:
        found = await session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task"),
            {"task": task},
        )
    return int(found or 0)


async def run_jobs_until(
    runtime: Runtime, done: Callable[[], Awaitable[bool]], *, timeout: float = 20.0
) -> None:
    """Run the real procrastinate worker in rounds until ``done`` (retries are scheduled a
    little ahead, and a worker run with ``wait=False`` stops when nothing is due yet)."""
    from rxroute.jobs import queue

    deadline = time.monotonic() + timeout
    while not await done():
        assert time.monotonic() < deadline, f"not done after {timeout:g} s"
        await queue.run_worker_async(
            concurrency=4, wait=False, install_signal_handlers=False, listen_notify=False
        )
        await asyncio.sleep(0.02)


async def all_delivered(runtime: Runtime) -> bool:
    found = await deliveries(runtime)
    return bool(found) and all(d.state == "delivered" for d in found)
