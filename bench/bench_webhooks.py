"""Webhook receiver benchmark: throughput and answer time beside a bare endpoint.

Run by hand::

    python bench/bench_webhooks.py                  # embedded PostgreSQL in a temp folder
    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python bench/bench_webhooks.py --requests 3000 --concurrency 20

It creates a fresh migrated database with the demo data and some issued Region B
prescriptions, starts rxroute under uvicorn on a free 127.0.0.1 port, and mounts one extra
route on that same app instance, ``POST /_bench/bare``, that only answers 200 (same server,
same middleware: the floor for any endpoint). A load generator in its own thread then

1. measures requests/s and p50/p99 answer time for the bare endpoint, for signed new
   webhook events (verify, store, defer the job in one transaction), and for redeliveries
   of an already stored event (the duplicate path), each bounded by a request count and a
   time limit, and prints each beside the bare endpoint as a ratio;
2. starts the procrastinate worker in the server's process and measures, per event, the
   delay from the webhook's 2xx answer to the new status being visible through
   ``GET /api/v1/prescriptions/{id}``.

Numbers depend on the machine; the ratios are the point. The database is dropped at the end.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import Response
from sqlalchemy import select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_seed import drop_database, fresh_database

from rxroute.app import create_app
from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.jobs import queue
from rxroute.logging import configure_logging
from rxroute.models import Prescription
from rxroute.netutil import tcp_listener
from rxroute.prescriptions.history import record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime, start_runtime, stop_runtime
from rxroute.seed import data
from rxroute.seed.service import add_prescriptions, seed_demo
from rxroute.webhooks.signature import sign

BARE = "/_bench/bare"
WEBHOOK = "/webhooks/erx"


@dataclass
class Result:
    name: str
    completed: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- setup ------------------------------------------------------------------------------------


async def prepare(runtime: Runtime, count: int) -> list[str]:
    """Demo data plus ``count`` issued Region B prescriptions; returns their platform ids."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2)
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
            await session.execute(
                update(Prescription)
                .where(Prescription.id == pid)
                .values(channel="erx", provider_prescription_id=provider_id)
            )
            await record_status(session, pid, Status.QUEUED, source=Source.PATIENT)
            await record_status(session, pid, Status.SENDING, source=Source.WORKER)
            await record_status(session, pid, Status.ISSUED, source=Source.WORKER)
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


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    sock = tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = _InLoopServer(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# --- the load generator (its own thread and event loop) ---------------------------------------


def in_process(pool: ProcessPoolExecutor, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``asyncio.run(func(*args))`` in the load-generator process; await it here.

    A separate process, not a thread: two busy event loops sharing one GIL would measure
    the GIL's switch interval instead of the server.
    """
    return asyncio.get_running_loop().run_in_executor(pool, _run_coroutine, func, *args)


def _run_coroutine(func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return asyncio.run(func(*args))  # type: ignore[arg-type]


async def load(
    name: str,
    url: str,
    requests: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
    max_seconds: float,
    expect: int = 200,
) -> Result:
    latencies: list[float] = []
    errors = 0
    index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30) as client:
        warm_up = min(50, len(requests) // 10)
        for body, headers in requests[:warm_up]:
            await client.post(url, content=body, headers=headers)
        index = warm_up
        started = time.perf_counter()
        deadline = started + max_seconds

        async def one_client() -> None:
            nonlocal index, errors
            while time.perf_counter() < deadline:
                if index >= len(requests):
                    return
                body, headers = requests[index]
                index += 1
                sent = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append((time.perf_counter() - sent) * 1000)
                if response.status_code != expect:
                    errors += 1

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Result(name, len(latencies), seconds, latencies, errors)


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


def report(result: Result, bare: Result | None) -> None:
    line = (
        f"{result.name:<22} {result.completed:>6} req in {result.seconds:5.1f} s  "
        f"{result.rps:8.0f} req/s  p50 {result.pct(0.5):6.2f} ms  p99 {result.pct(0.99):6.2f} ms"
    )
    if result.errors:
        line += f"  ({result.errors} unexpected answers)"
    if bare is not None and bare.rps:
        line += (
            f"   vs bare: {result.rps / bare.rps:4.2f}x req/s, "
            f"{result.pct(0.5) / bare.pct(0.5):4.1f}x p50, "
            f"{result.pct(0.99) / bare.pct(0.99):4.1f}x p99"
        )
    print(line)


async def run(url: str, args: argparse.Namespace) -> None:
    settings = Settings(  # type: ignore[call-arg]
        database_url=url, erx_clinic_id=994, log_level="WARNING", _env_file=None
    )
    configure_logging("WARNING", json=True)
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    runtime = await start_runtime(settings, url)
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
        by_platform = {provider_id: str(pid) for pid, provider_id in rows}

        app = create_app(settings)

        async def bare() -> Response:
            return Response(status_code=200)

        app.add_api_route(BARE, bare, methods=["POST"], include_in_schema=False)
        secret = settings.webhook_secret.get_secret_value()
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        async with serve(app) as base:
            n = args.requests
            statuses = ("signed", "printed")
            hooks = [
                signed(secret, event(targets[i % len(targets)], statuses[i % 2]))
                for i in range(n + 50)
            ]
            duplicate = signed(secret, event(targets[0], "signed"))
            bare_requests = [(b"{}", {"Content-Type": "application/json"})] * (n + 50)

            def measure(
                name: str, path: str, reqs: list[tuple[bytes, dict[str, str]]]
            ) -> Awaitable[Result]:
                return in_process(
                    pool, load, name, base + path, reqs, args.concurrency, args.seconds
                )

            print(
                f"rxroute webhook bench: {n} requests per target at most, "
                f"{args.seconds:.0f} s per round at most, {args.rounds} interleaved rounds, "
                f"concurrency {args.concurrency}, "
                f"worker off during throughput"
            )
            # Interleaved rounds, so drift in the machine's load hits every target alike.
            totals: dict[str, Result] = {}
            per_round = max(1, n // args.rounds)
            plan = [
                ("bare endpoint", BARE, bare_requests),
                ("webhook (new event)", WEBHOOK, hooks),
                ("webhook (duplicate)", WEBHOOK, [duplicate] * (n + 50)),
            ]
            for round_ in range(args.rounds):
                for name, path, reqs in plan:
                    chunk = reqs[round_ * per_round : (round_ + 1) * per_round + 50]
                    got: Result = await measure(name, path, chunk)
                    total = totals.setdefault(name, Result(name, 0, 0.0, [], 0))
                    total.completed += got.completed
                    total.seconds += got.seconds
                    total.latencies_ms.extend(got.latencies_ms)
                    total.errors += got.errors
            bare_total = totals["bare endpoint"]
            for name, _, _ in plan:
                report(totals[name], None if name == "bare endpoint" else bare_total)

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
            if delays:
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
        await stop_runtime()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", "-n", type=int, default=3000, help="per target, at most")
    parser.add_argument("--seconds", type=float, default=15.0, help="per target, at most")
    parser.add_argument("--concurrency", "-c", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target")
    parser.add_argument("--prescriptions", type=int, default=200)
    parser.add_argument("--visibility-samples", type=int, default=100)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rxroute-bench-") as tmp:
        url, admin = fresh_database(Path(tmp))
        try:
            migrate.upgrade(url)
            asyncio.run(run(url, args))
        finally:
            drop_database(url, admin)


if __name__ == "__main__":
    main()
