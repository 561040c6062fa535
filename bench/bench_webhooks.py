"""Webhook receiver benchmark: rxroute's receiver between a minimal durable one and a bare 200.

Run by hand::

    python bench/bench_webhooks.py                  # embedded PostgreSQL in a temp folder
    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python bench/bench_webhooks.py --requests 3000 --processes 2 --concurrency 20

It creates a fresh migrated database with the demo data and some issued Region B
prescriptions, starts rxroute under uvicorn on a free 127.0.0.1 port, and mounts two extra
routes on that same app instance: ``POST /_bench/bare`` only answers 200 (same server, same
middleware: the ceiling for any endpoint), and ``POST /_bench/minimal`` is the smallest
durable receiver (verify the signature, one INSERT of the body into a scratch table, on the
same pool in autocommit). The server runs on uvloop with httptools, as ``rxroute serve``
does (``--loop asyncio`` for the standard loop), after :func:`rxroute.heap.settle_heap`, as
every ``rxroute serve`` process. The load comes from ``--processes`` processes, each with its own
httpx client and its share of the concurrency. Then

1. interleaved closed-loop rounds measure req/s and p50/p99 for the bare endpoint, the
   minimal receiver, signed new events and redeliveries of one stored event (the duplicate
   path), each printed beside the bare endpoint and the minimal receiver as a ratio, with
   the statements the server sent per request (psycopg's executes, counted in process);
2. an open-loop phase sends ``--rate`` req/s (200) to the minimal receiver and to rxroute's
   receiver and prints p50/p99 at that rate;
3. the PostgreSQL sessions opened during 1 and 2 are counted (new backend pids, and
   ``pg_stat_database.sessions``), after a warm-up that grew the pools;
4. the processing job itself runs on ``--processing-samples`` of the events stored in 1, one
   at a time, and its SQL round trips per job are printed (counted as in 1);
5. the procrastinate worker starts in the server's process and, per event, the delay from
   the webhook's 2xx answer to the new status being visible through
   ``GET /api/v1/prescriptions/{id}`` is measured.

Numbers depend on the machine (and on whoever else is using it); the ratios are the point.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop
from fastapi import Request, Response
from procrastinate import JobContext
from procrastinate.jobs import Job
from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import (
    Result,
    ServerCost,
    ServerCostMeter,
    StatementCounter,
    in_process,
    load_from_processes,
    serve,
)
from bench_seed import drop_database, fresh_database

from rxroute.app import create_app
from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.deliveries import ledger
from rxroute.heap import settle_heap
from rxroute.jobs import queue
from rxroute.logging import configure_logging
from rxroute.models import InboundWebhookEvent, Pharmacy, Prescription
from rxroute.prescriptions.history import lock_prescription, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime, start_runtime, stop_runtime
from rxroute.seed import data
from rxroute.seed.service import add_prescriptions, seed_demo
from rxroute.webhooks.receiver import webhook_secrets
from rxroute.webhooks.signature import (
    HEADER_SIGNATURE,
    HEADER_SIGNATURE_TIMESTAMP,
    SignatureError,
    sign,
    verify,
)
from rxroute.webhooks.tasks import process_webhook_event

BARE = "/_bench/bare"
MINIMAL = "/_bench/minimal"
WEBHOOK = "/webhooks/erx"


# --- setup ------------------------------------------------------------------------------------


async def prepare(runtime: Runtime, count: int) -> list[str]:
    """Demo data plus ``count`` issued Region B prescriptions; returns their platform ids.

    Each goes through the deliveries ledger as a send would (a delivery to a Region B
    pharmacy, queued, sending, then issued with its platform reference), so a webhook about
    it finds it.
    """
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2)
        pharmacy = await session.scalar(select(Pharmacy).where(Pharmacy.region == "B").limit(1))
        assert pharmacy is not None
        ids = list(
            await session.scalars(
                select(Prescription.id)
                .where(Prescription.region == "B", Prescription.status == "draft")
                .limit(count)
            )
        )
        provider_ids = []
        for n, pid in enumerate(ids):
            provider_id = f"SRXBENCH{n:07d}"
            prescription = await lock_prescription(session, pid)
            prescription.channel = "erx"
            prescription.pharmacy_id = pharmacy.id
            delivery = await ledger.open_delivery(
                session,
                prescription,
                pharmacy=pharmacy,
                region="B",
                channel="erx",
                source=Source.PATIENT,
                actor=None,
                reason=None,
            )
            delivery.reached_out = True
            delivery.attempts_in_series = 1
            await record_status(session, pid, Status.SENDING, source=Source.WORKER)
            await ledger.observe(
                session,
                prescription,
                delivery,
                Status.ISSUED,
                source=Source.WORKER,
                ref=provider_id,
                mirror_ref=True,
                implies=Status.ISSUED,
                raw_status="issued",
            )
            provider_ids.append(provider_id)
    return provider_ids


def event(provider_id: str, status: str) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    payload = {
        "id": f"evt_{uuid.uuid4().hex}",
        "event": "prescription.status_changed",
        "created_at": now,
        "data": {"prescription_id": provider_id, "status": status, "occurred_at": now},
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def signed(secret: str, body: bytes) -> tuple[bytes, dict[str, str]]:
    stamp = int(time.time())
    return body, {
        "Content-Type": "application/json",
        "X-Signature": sign(secret, stamp, body),
        "X-Signature-Timestamp": str(stamp),
    }


async def database_sessions(runtime: Runtime) -> tuple[set[int], int]:
    """Backend pids connected to this database now, and pg_stat_database.sessions."""
    async with runtime.queue_pool.connection() as connection:
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        pids = await connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
        found = {row[0] for row in await pids.fetchall()}
        total = await connection.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        row = await total.fetchone()
        await connection.commit()
    return found, int(row[0]) if row else 0


MINIMAL_TABLE = """
CREATE TABLE IF NOT EXISTS bench_minimal_events (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL
)
"""


def add_bench_routes(app: Any, runtime: Runtime) -> None:
    """The ceiling (a bare 200) and a minimal durable receiver, on rxroute's own app."""
    settings = runtime.settings

    async def bare() -> Response:
        return Response(status_code=200)

    async def minimal(request: Request) -> Response:
        """Verify the signature, one INSERT in autocommit on the same pool: nothing else."""
        body = await request.body()
        try:
            verify(
                body,
                request.headers.get(HEADER_SIGNATURE),
                request.headers.get(HEADER_SIGNATURE_TIMESTAMP),
                webhook_secrets(runtime),
                now=time.time,
                tolerance_seconds=settings.webhook_tolerance_seconds,
            )
        except SignatureError:
            return Response(status_code=401)
        async with runtime.queue_pool.connection() as connection:
            previous = connection.autocommit  # the queue's pool is in autocommit already
            await connection.set_autocommit(True)
            try:
                await connection.execute(
                    "INSERT INTO bench_minimal_events (payload) VALUES (%s::jsonb)",
                    (body.decode(),),
                )
            finally:
                await connection.set_autocommit(previous)
        return Response(status_code=200)

    app.add_api_route(BARE, bare, methods=["POST"], include_in_schema=False)
    app.add_api_route(MINIMAL, minimal, methods=["POST"], include_in_schema=False)


async def visibility(
    base: str, secret: str, token: str, targets: list[tuple[str, str]], max_seconds: float
) -> tuple[list[float], int]:
    """Per event: ms from the webhook's answer until the API shows the new status."""
    delays: list[float] = []
    timeouts = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as client:
        stop_at = time.perf_counter() + max_seconds
        for rx_id, provider_id in targets:
            if time.perf_counter() > stop_at:
                break
            body, hook_headers = signed(secret, event(provider_id, "dispensed"))
            answer = await client.post(WEBHOOK, content=body, headers=hook_headers)
            answered = time.perf_counter()
            assert answer.status_code == 200, answer.text
            while True:
                shown = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers)
                if shown.json()["status"] == "dispensed":
                    delays.append((time.perf_counter() - answered) * 1000)
                    break
                if time.perf_counter() - answered > 10:
                    timeouts += 1
                    break
                await asyncio.sleep(0.002)
    return delays, timeouts


# --- main ---------------------------------------------------------------------------------------


def add_cost(total: ServerCost, more: ServerCost) -> None:
    total.cpu_seconds += more.cpu_seconds
    assert total.pauses_ms is not None
    for generation, pauses in (more.pauses_ms or {}).items():
        total.pauses_ms.setdefault(generation, []).extend(pauses)


def report(
    result: Result,
    ceilings: list[Result],
    statements: float | None,
    cost: ServerCost | None = None,
) -> None:
    line = (
        f"{result.name:<28} {result.completed:>6} req in {result.seconds:5.1f} s "
        f"{result.rps:7.0f} req/s  p50 {result.pct(0.5):6.2f} ms  p99 {result.pct(0.99):6.2f} ms"
    )
    if statements is not None:
        line += f"  {statements:4.1f} stmt/req"
    for ceiling in ceilings:
        if ceiling.rps and ceiling is not result:
            line += f"  {result.rps / ceiling.rps:4.2f}x {ceiling.name.split()[0]}"
    if result.errors:
        line += f"  ({result.errors} unexpected answers)"
    print(line)
    if cost is not None:
        print(f"    {cost.describe(result.completed)}")


async def run(url: str, args: argparse.Namespace) -> None:
    settings = Settings(  # type: ignore[call-arg]
        database_url=url, erx_clinic_id=994, log_level="WARNING", _env_file=None
    )
    configure_logging("WARNING", json=True)
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    # No SMTP server here: the notification jobs the status changes defer cannot send.
    logging.getLogger("rxroute.notifications.tasks").setLevel(logging.ERROR)
    runtime = await start_runtime(settings, url)
    counter = StatementCounter()
    try:
        targets = await prepare(runtime, args.prescriptions)
        async with runtime.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(Prescription.id, Prescription.provider_prescription_id).where(
                        Prescription.provider_prescription_id.in_(targets)
                    )
                )
            ).all()
        async with runtime.engine.begin() as connection:
            await connection.execute(text(MINIMAL_TABLE))
        by_platform = {provider_id: str(pid) for pid, provider_id in rows}

        app = create_app(settings)
        add_bench_routes(app, runtime)
        if not args.no_settle_heap:
            settle_heap()  # as create_app_from_env does in every `rxroute serve` process
        secret = settings.webhook_secret.get_secret_value()
        pool = ProcessPoolExecutor(
            max_workers=args.processes, mp_context=multiprocessing.get_context("spawn")
        )
        async with serve(app) as base:
            n = args.requests
            statuses = ("signed", "printed")

            def hooks(count: int) -> list[tuple[bytes, dict[str, str]]]:
                return [
                    signed(secret, event(targets[i % len(targets)], statuses[i % 2]))
                    for i in range(count)
                ]

            duplicate = signed(secret, event(targets[0], "signed"))
            bare_requests = [(b"{}", {"Content-Type": "application/json"})] * n
            plan = [
                ("bare endpoint (ceiling)", BARE, lambda: bare_requests),
                ("minimal durable receiver", MINIMAL, lambda: hooks(n)),
                ("rxroute webhook (new)", WEBHOOK, lambda: hooks(n)),
                ("rxroute webhook (duplicate)", WEBHOOK, lambda: [duplicate] * n),
            ]

            def measure(
                name: str,
                path: str,
                reqs: list[tuple[bytes, dict[str, str]]],
                seconds: float,
                rate: float | None = None,
            ) -> Awaitable[Result]:
                return load_from_processes(
                    pool,
                    args.processes,
                    name,
                    base + path,
                    base + BARE,
                    reqs,
                    args.concurrency,
                    seconds,
                    rate,
                )

            print(
                f"rxroute webhook bench: {args.processes} load processes, concurrency "
                f"{args.concurrency}, {args.rounds} interleaved rounds of at most {n} requests "
                f"or {args.seconds:.0f} s per target, then {args.rate:.0f} req/s for "
                f"{args.rate_seconds:.0f} s; worker off during throughput"
            )
            # Warm up every path (and grow the pools to their size) before counting sessions.
            for name, path, make in plan:
                await measure(name, path, make(), 1.5)
            await asyncio.sleep(1.5)
            pids_before, sessions_before = await database_sessions(runtime)
            counter.install()
            meter = ServerCostMeter()
            # Interleaved rounds, so drift in the machine's load hits every target alike.
            totals: dict[str, Result] = {}
            statements: dict[str, int] = {}
            costs: dict[str, ServerCost] = {}
            for _ in range(args.rounds):
                for name, path, make in plan:
                    counted = counter.count
                    reqs = make()
                    meter.start()
                    got = await measure(name, path, reqs, args.seconds)
                    add_cost(costs.setdefault(name, ServerCost(pauses_ms={})), meter.stop())
                    statements[name] = statements.get(name, 0) + counter.count - counted
                    total = totals.setdefault(name, Result(name, 0, 0.0, [], 0))
                    total.completed += got.completed
                    total.seconds += got.seconds
                    total.latencies_ms.extend(got.latencies_ms)
                    total.errors += got.errors
            ceilings = [totals["bare endpoint (ceiling)"], totals["minimal durable receiver"]]
            for name, _, _ in plan:
                done = totals[name].completed
                report(
                    totals[name], ceilings, statements[name] / done if done else None, costs[name]
                )
            paced = []
            for name, path in (
                ("minimal durable receiver", MINIMAL),
                ("rxroute webhook (new)", WEBHOOK),
            ):
                label = f"{name} @ {args.rate:.0f}/s"
                counted = counter.count
                wanted = int(args.rate * args.rate_seconds) + 10
                reqs = hooks(wanted)
                meter.start()
                got = await measure(label, path, reqs, args.rate_seconds, args.rate)
                cost = meter.stop()
                paced.append((got, (counter.count - counted) / max(1, got.completed), cost))
            for got, per_request, cost in paced:
                report(got, [], per_request, cost)
            counter.uninstall()
            await asyncio.sleep(1.5)  # pg_stat_database is flushed by backends about 1/s
            pids_after, sessions_after = await database_sessions(runtime)
            print(
                f"database sessions during the run: {len(pids_after - pids_before)} new backend "
                f"pids, pg_stat_database.sessions +{sessions_after - sessions_before} "
                f"({len(pids_before)} connected before, {len(pids_after)} after)"
            )

            await processing_round_trips(runtime, counter, args.processing_samples)
            # The throughput phase left a backlog of jobs; the delay phase starts clean.
            async with runtime.engine.begin() as connection:
                await connection.execute(
                    text("DELETE FROM procrastinate_jobs WHERE status = 'todo'")
                )
            async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
                login = await client.post(
                    "/api/v1/auth/token",
                    json={"email": data.DEMO_SUPPORT_EMAIL, "password": data.DEMO_PASSWORD},
                )
                token = login.json()["access_token"]
            worker = asyncio.create_task(
                queue.run_worker_async(
                    concurrency=args.worker_concurrency,
                    install_signal_handlers=False,
                    fetch_job_polling_interval=1.0,
                    queues=["default"],
                )
            )
            await asyncio.sleep(0.5)  # let the worker start listening
            samples = [
                (by_platform[p], p) for p in targets[: args.visibility_samples] if p in by_platform
            ]
            delays, timeouts = await in_process(
                pool, visibility, base, secret, token, samples, args.seconds
            )
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            if not delays:
                print(f"answer -> visible in API  no event visible ({timeouts} timed out)")
            else:
                ordered = sorted(delays)
                print(
                    f"answer -> visible in API  {len(delays)} events  "
                    f"p50 {statistics.median(ordered):6.1f} ms  "
                    f"p99 {ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]:6.1f} ms  "
                    f"max {ordered[-1]:6.1f} ms"
                    + (f"  ({timeouts} not visible within 10 s)" if timeouts else "")
                )
        pool.shutdown()
    finally:
        counter.uninstall()
        await stop_runtime()


async def processing_round_trips(runtime: Runtime, counter: StatementCounter, count: int) -> None:
    """Run the processing job itself on ``count`` events the throughput phase stored, one at
    a time, and print its SQL round trips per job (rxroute's own: the job's transaction,
    counted like the requests' statements; procrastinate's fetch and finish are not in it)."""
    async with runtime.sessionmaker() as session:
        pending = list(
            await session.scalars(
                select(InboundWebhookEvent.id)
                .where(InboundWebhookEvent.state == "pending")
                .order_by(InboundWebhookEvent.received_at)
                .limit(count)
            )
        )
    queue.perform_import_paths()  # type: ignore[no-untyped-call]
    per_job: list[int] = []
    seconds: list[float] = []
    outcomes: dict[str, int] = {}
    counter.install()
    try:
        for n, event_id in enumerate(pending):
            job = Job(
                id=n + 1,
                queue="default",
                lock=None,
                queueing_lock=None,
                task_name="process_webhook_event",
                attempts=0,
            )
            context = JobContext(
                app=queue, job=job, start_timestamp=time.time(), abort_reason=lambda: None
            )
            before = counter.count
            started = time.perf_counter()
            state = await process_webhook_event(context, str(event_id))
            seconds.append((time.perf_counter() - started) * 1000)
            per_job.append(counter.count - before)
            outcomes[state] = outcomes.get(state, 0) + 1
    finally:
        counter.uninstall()
    if not per_job:
        print("processing job: no stored event to process")
        return
    print(
        f"processing job, {len(per_job)} events one at a time ({outcomes}): "
        f"{statistics.mean(per_job):.1f} SQL round trips per job (max {max(per_job)}), "
        f"p50 {statistics.median(seconds):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", "-n", type=int, default=3000, help="per target, at most")
    parser.add_argument("--seconds", type=float, default=8.0, help="per target, at most")
    parser.add_argument("--concurrency", "-c", type=int, default=20, help="over all processes")
    parser.add_argument("--processes", "-p", type=int, default=2, help="load processes")
    parser.add_argument("--rate", type=float, default=200.0, help="req/s of the paced phase")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target")
    parser.add_argument("--prescriptions", type=int, default=200)
    parser.add_argument("--visibility-samples", type=int, default=100)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--processing-samples", type=int, default=200)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--no-settle-heap",
        action="store_true",
        help="leave the collector as Python starts it (to compare with rxroute.heap)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rxroute-bench-") as tmp:
        url, admin = fresh_database(Path(tmp))
        try:
            migrate.upgrade(url)
            # The server's loop: uvloop, as `rxroute serve` runs it (uvicorn's "auto" picks it
            # when installed, and uvicorn[standard] installs it); both sides share it.
            loop_factory = uvloop.new_event_loop if args.loop == "uvloop" else None
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(run(url, args))
        finally:
            drop_database(url, admin)


if __name__ == "__main__":
    main()
