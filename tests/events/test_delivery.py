"""Delivery to a real receiver on 127.0.0.1: signed, verified, in order under retries."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from standardwebhooks import Webhook, WebhookVerificationError

from rxroute.events import console, delivery
from rxroute.events.receiver import EventReceiver
from rxroute.events.secrets import new_secret
from rxroute.events.tasks import sweep_once
from rxroute.jobs import queue
from rxroute.models import EventDelivery, EventEndpoint, Role
from rxroute.prescriptions.history import record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from tests import factories
from tests.events.conftest import (
    add_endpoint,
    all_delivered,
    deliveries,
    queued_prescription,
    run_jobs_until,
)
from tests.factories import observe_current

JOURNEY = ["prescription.queued", "prescription.sent", "prescription.signed"]


async def _journeys(runtime: Runtime, count: int) -> list[uuid.UUID]:
    """``count`` prescriptions queued, issued and signed (three events each), interleaved."""
    async with runtime.sessionmaker() as session, session.begin():
        pids = [await queued_prescription(session, runtime) for _ in range(count)]
    for step in (Status.ISSUED, Status.SIGNED):
        for n, pid in enumerate(pids):
            async with runtime.sessionmaker() as session, session.begin():
                await observe_current(session, pid, step, ref=f"SRX{n:04d}{pid.hex[:6]}")
    return pids


async def test_delivered_events_verify_with_standardwebhooks(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
    (pid,) = await _journeys(runtime, 1)
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    received = receiver.events()
    assert [e.type for e in received] == JOURNEY
    verifier = Webhook(secret)
    for event in received:
        # Verified again here, from the raw request, with the package's own verifier.
        payload = verifier.verify(event.body, event.headers)
        assert payload["data"]["prescription_id"] == str(pid)
        assert event.headers["webhook-signature"].startswith("v1,")
        assert event.message_id.startswith("evt_")
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(event.body, event.headers)
        tampered = event.body.replace(b'"signed"', b'"voided"')
        if tampered != event.body:
            with pytest.raises(WebhookVerificationError):
                verifier.verify(tampered, event.headers)
    assert receiver.refused == 0
    rows = await deliveries(runtime)
    assert [(d.state, d.attempts, d.last_status_code) for d in rows] == [("delivered", 1, 204)] * 3


async def test_in_order_per_prescription_under_retries(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        endpoint = await add_endpoint(session, runtime, receiver.events_url, secret)
    receiver.fail_next(7)
    pids = await _journeys(runtime, 4)
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    received = receiver.events()
    for pid in pids:
        mine = [e for e in received if e.data["prescription_id"] == str(pid)]
        assert [e.type for e in mine] == JOURNEY, pid  # in order, none skipped, none twice
    rows = await deliveries(runtime)
    assert sum(d.attempts for d in rows) == 12 + 7  # every staged failure was retried
    async with runtime.sessionmaker() as session:
        found = await session.get_one(EventEndpoint, endpoint.id)
        assert found.failing_since is None  # cleared by the successes that followed


async def test_a_failing_endpoint_is_flagged_and_its_events_wait(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        endpoint = await add_endpoint(session, runtime, receiver.events_url, secret)
    receiver.fail_next(1000)
    await _journeys(runtime, 1)

    async def retried_twice() -> bool:
        rows = await deliveries(runtime)
        return rows[0].attempts >= 3

    await run_jobs_until(runtime, retried_twice)
    head, *later = await deliveries(runtime)
    assert head.state == "failing" and head.last_error == "HTTP 503"
    assert head.last_status_code == 503 and head.next_attempt_at is not None
    # Nothing after the failing one was tried: the stream stops at its first failure.
    assert [(d.state, d.attempts) for d in later] == [("pending", 0), ("pending", 0)]
    async with runtime.sessionmaker() as session:
        found = await session.get_one(EventEndpoint, endpoint.id)
    assert found.failing_since is not None
    assert receiver.events() == []


async def test_an_unreachable_endpoint_fails_visibly(fast_retries: Runtime) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, "http://127.0.0.1:9/events", new_secret())
        await queued_prescription(session, runtime)

    async def tried() -> bool:
        return (await deliveries(runtime))[0].attempts >= 1

    await run_jobs_until(runtime, tried)
    (row,) = await deliveries(runtime)
    assert row.state == "failing"
    assert row.last_error == "could not connect (ConnectError)"
    assert row.last_status_code is None


async def test_the_last_attempt_gives_up_and_a_resend_starts_again(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
    await _journeys(runtime, 1)
    last = delivery.max_attempts(runtime.settings)
    # As if every attempt but the last had failed over the past three days.
    async with runtime.sessionmaker() as session, session.begin():
        head = (await deliveries(runtime))[0]
        await session.execute(
            update(EventDelivery)
            .where(EventDelivery.id == head.id)
            .values(state="failing", attempts=last - 1)
        )
    receiver.fail_next(1)

    async def gave_up() -> bool:
        return (await deliveries(runtime))[0].gave_up

    await run_jobs_until(runtime, gave_up)
    head, *later = await deliveries(runtime)
    assert head.attempts == last and head.next_attempt_at is None
    assert all(d.state == "pending" for d in later)
    # Given up, it is not picked up again by the sweep, and nothing overtakes it...
    assert await sweep_once(runtime, now=datetime.now(UTC) + timedelta(minutes=1)) == 0
    assert receiver.events() == []
    # ...until support resends it: then the whole stream goes, in order.
    async with runtime.sessionmaker() as session, session.begin():
        support = await factories.make_user(session, Role.SUPPORT)
        await console.request_resend(session, runtime.settings, support, head.id)
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    assert [e.type for e in receiver.events()] == JOURNEY


async def test_a_lost_job_is_found_by_the_sweep(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
        await queued_prescription(session, runtime)
        await session.execute(text("DELETE FROM procrastinate_jobs"))
    # Not yet: a job may still be on its way for a moment.
    assert await sweep_once(runtime) == 0
    assert await sweep_once(runtime, now=datetime.now(UTC) + timedelta(minutes=1)) == 1
    # It has a job now, so the next sweep leaves it alone.
    assert await sweep_once(runtime, now=datetime.now(UTC) + timedelta(minutes=1)) == 0
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    assert [e.type for e in receiver.events()] == ["prescription.queued"]


async def test_a_status_recorded_while_the_endpoint_is_down_still_goes_in_order(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
        pid = await queued_prescription(session, runtime)
    receiver.fail_next(2)

    async def failed_once() -> bool:
        return (await deliveries(runtime))[0].attempts >= 1

    await run_jobs_until(runtime, failed_once)
    async with runtime.sessionmaker() as session, session.begin():
        await record_status(session, pid, Status.SENDING, source=Source.WORKER)
        await record_status(session, pid, Status.FAILED, source=Source.WORKER)
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    assert [e.type for e in receiver.events()] == ["prescription.queued", "prescription.failed"]
    assert json.loads(receiver.events()[1].body)["data"]["previous_status"] == "sending"


async def test_a_disabled_endpoint_keeps_its_events_until_enabled(
    fast_retries: Runtime, receiver: EventReceiver, secret: str
) -> None:
    """Disabling an endpoint stops its waiting events; enabling it again sends them."""
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        endpoint = await add_endpoint(session, runtime, receiver.events_url, secret)
        await queued_prescription(session, runtime)
        await session.execute(
            update(EventEndpoint).where(EventEndpoint.id == endpoint.id).values(active=False)
        )
    await queue.run_worker_async(
        concurrency=2, wait=False, install_signal_handlers=False, listen_notify=False
    )
    assert receiver.events() == []
    assert [d.state for d in await deliveries(runtime)] == ["pending"]
    async with runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(EventEndpoint).where(EventEndpoint.id == endpoint.id).values(active=True)
        )
    assert await sweep_once(runtime, now=datetime.now(UTC) + timedelta(minutes=1)) == 1
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    assert len(receiver.events()) == 1
    async with runtime.sessionmaker() as session:
        assert (await session.scalars(select(EventDelivery.state))).all() == ["delivered"]


async def test_a_secret_that_cannot_be_decrypted_is_a_visible_failure(
    fast_retries: Runtime, receiver: EventReceiver
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        endpoint = await add_endpoint(session, runtime, receiver.events_url, new_secret())
        # As if encrypted with a key since rotated out of RXROUTE_ENCRYPTION_KEYS.
        endpoint.secret_encrypted = "gAAAAABnot-a-token-any-key-opens"
        await queued_prescription(session, runtime)

    async def tried() -> bool:
        return (await deliveries(runtime))[0].attempts >= 1

    await run_jobs_until(runtime, tried)
    (row,) = await deliveries(runtime)
    assert row.state == "failing"
    assert row.last_error is not None and "cannot be decrypted" in row.last_error
    assert receiver.events() == [] and receiver.refused == 0
