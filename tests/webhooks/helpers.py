"""Shared helpers for the webhook tests: signed requests, events, counts, pending work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from procrastinate import JobContext
from procrastinate.jobs import Job
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import InboundWebhookEvent, Pharmacy, Prescription, PrescriptionStatusEvent
from rxroute.netutil import tcp_listener
from rxroute.prescriptions.history import history, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from rxroute.seed.service import add_prescriptions, seed_demo
from rxroute.webhooks.processing import process_event
from rxroute.webhooks.signature import sign
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    observe_current,
    queue_delivery,
)

EVENT_TYPE = "prescription.status_changed"


def job_context(attempts: int = 0, job_id: int = 1) -> JobContext:
    """What the worker passes ``process_webhook_event`` after ``attempts`` earlier runs."""
    from rxroute.jobs import queue

    queue.perform_import_paths()
    job = Job(
        id=job_id,
        queue="default",
        lock=None,
        queueing_lock=None,
        task_name="process_webhook_event",
        attempts=attempts,
    )
    return JobContext(app=queue, job=job, start_timestamp=time.time(), abort_reason=lambda: None)


def event_payload(
    *,
    status: str,
    provider_id: str | None = None,
    client_ref_id: str | None = None,
    previous_status: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    event_type: str = EVENT_TYPE,
) -> dict[str, Any]:
    """An event shaped as the contract (and the sandbox) sends it."""
    moment = (occurred_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "event": event_type,
        "created_at": moment,
        "data": {
            "prescription_id": provider_id,
            "client_ref_id": client_ref_id,
            "status": status,
            "previous_status": previous_status,
            "occurred_at": moment,
        },
    }


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def signed_headers(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "X-Signature": sign(secret, stamp, body),
        "X-Signature-Timestamp": str(stamp),
    }


async def stored_event_count(runtime: Runtime) -> int:
    async with runtime.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(InboundWebhookEvent))
    return int(count or 0)


async def job_count(runtime: Runtime, task_name: str = "process_webhook_event") -> int:
    async with runtime.sessionmaker() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :name"),
            {"name": task_name},
        )
    return int(count or 0)


async def process_pending(runtime: Runtime) -> list[str]:
    """Process every pending event, oldest first, one transaction each (as the job does)."""
    async with runtime.sessionmaker() as session:
        pending = list(
            await session.scalars(
                select(InboundWebhookEvent.id)
                .where(InboundWebhookEvent.state == "pending")
                .order_by(InboundWebhookEvent.received_at, InboundWebhookEvent.id)
            )
        )
    states = []
    for event_id in pending:
        async with runtime.sessionmaker() as session, session.begin():
            states.append(await process_event(session, event_id))
    return states


async def new_prescription(
    runtime: Runtime, *, up_to: Status | None = Status.ISSUED, provider_id: str | None = None
) -> uuid.UUID:
    """A committed Region B prescription moved through queued -> sending (-> issued)."""
    async with runtime.sessionmaker() as session, session.begin():
        patient = await make_patient(session)
        prescriber = await make_prescriber(session, runtime.secret_box)
        pharmacy = await make_pharmacy(session)
        prescription = await make_prescription(
            session, patient, prescriber, region="B", channel="erx", pharmacy_id=pharmacy.id
        )
        pid = prescription.id
        steps = [Status.QUEUED, Status.SENDING, Status.ISSUED]
        for step in steps:
            if up_to is None or steps.index(step) > steps.index(up_to):
                break
            if step is Status.ISSUED:
                await record_issued(session, pid, provider_id or provider_id_for(pid))
            elif step is Status.QUEUED:
                delivery = await queue_delivery(session, pid, source=Source.PATIENT)
            else:
                # What the send job's claim records: it is about to call the platform.
                delivery.reached_out = True
                delivery.attempts_in_series = 1
                await record_status(session, pid, step, source=Source.WORKER)
    return pid


async def record_issued(session: AsyncSession, pid: uuid.UUID, provider_id: str) -> None:
    """What the send job records once the platform has answered (its own helper)."""
    await observe_current(session, pid, Status.ISSUED, ref=provider_id, raw_status="issued")


def provider_id_for(pid: uuid.UUID) -> str:
    return "SRX" + pid.hex[:12].upper()


async def status_and_history(
    runtime: Runtime, pid: uuid.UUID
) -> tuple[str, list[PrescriptionStatusEvent]]:
    async with runtime.sessionmaker() as session:
        prescription = await session.get(Prescription, pid)
        assert prescription is not None
        return prescription.status, await history(session, pid)


async def run_jobs(runtime: Runtime, *, concurrency: int = 4, rounds: int = 50) -> None:
    """Run the real procrastinate worker until no job is left to do.

    ``wait=False`` stops a worker as soon as it finds nothing *fetchable*; a job held back
    by another job's lock is not fetchable yet, so run rounds until nothing is left.
    """
    from rxroute.jobs import queue

    for _ in range(rounds):
        await queue.run_worker_async(
            concurrency=concurrency,
            wait=False,
            install_signal_handlers=False,
            listen_notify=False,
            queues=["default"],
        )
        async with runtime.sessionmaker() as session:
            left = await session.scalar(
                text(
                    "SELECT count(*) FROM procrastinate_jobs "
                    "WHERE status IN ('todo', 'doing') AND scheduled_at IS NULL "
                    "AND task_name = 'process_webhook_event'"
                )
            )
        if not left:
            return
    raise AssertionError(f"jobs still pending after {rounds} worker rounds")


class _InLoopServer(uvicorn.Server):
    """uvicorn inside the test's event loop, leaving signal handling to pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port in this event loop; yields its base URL.

    Same loop as the test, so the app shares the test's runtime (engine, pools) safely.
    """
    sock = tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = _InLoopServer(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("rxroute test server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@contextlib.asynccontextmanager
async def background_worker(concurrency: int = 4) -> AsyncIterator[None]:
    """The real procrastinate worker in this event loop, stopped gracefully on exit."""
    from procrastinate.worker import Worker

    from rxroute.jobs import queue

    queue.perform_import_paths()
    worker = Worker(
        queue,
        concurrency=concurrency,
        wait=True,
        install_signal_handlers=False,
        fetch_job_polling_interval=0.2,
        shutdown_graceful_timeout=10,
        queues=["default"],
    )
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)


async def queued_region_b(runtime: Runtime, count: int) -> list[uuid.UUID]:
    """Seeded demo accounts, and ``count`` Region B prescriptions queued for the platform."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2)
        pharmacies = list(
            await session.scalars(
                select(Pharmacy.id).where(Pharmacy.region == "B").order_by(Pharmacy.name)
            )
        )
        ids = list(
            await session.scalars(
                select(Prescription.id)
                .where(Prescription.region == "B", Prescription.status == "draft")
                .order_by(Prescription.id)
                .limit(count)
            )
        )
        assert len(ids) == count
        for index, pid in enumerate(ids):
            await session.execute(
                update(Prescription)
                .where(Prescription.id == pid)
                .values(channel="erx", pharmacy_id=pharmacies[index % len(pharmacies)])
            )
            await queue_delivery(session, pid, source=Source.PATIENT)
    return ids


def refusals(code: str) -> float:
    """How many webhooks this process refused for ``code`` (the Prometheus counter)."""
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "rxroute_webhooks_total", {"outcome": "refused", "reason": code}
    )
    return value or 0.0
