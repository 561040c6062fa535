"""Reconciliation sweeps per second against the out-of-process sandbox, and 100k projected.

Run by hand::

    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python bench/bench_reconcile.py --prescriptions 1000 --concurrency 1 8 16 --latency-ms 20

It starts ``rxroute sandbox`` as a separate process (so its CPU is not this process's) with
``--latency-ms`` added to every API call, makes a fresh database, issues N Region B
prescriptions through the real send path (8 at a time), then runs the real
``reconcile_once`` once per concurrency, each as if every prescription had been quiet past
``RXROUTE_RECONCILE_AFTER_SECONDS``. For each it prints prescriptions polled per second and
the projected time to sweep 100,000 at that rate (the run's budget is raised so one run sweeps
them all). One run per minute with the default 50 s budget sweeps about 50 x that rate.

The first sweep finds every prescription changed (signed on the platform, issued here), so
every answer takes the status path; it is timed once. Then, per concurrency, two quiet
sweeps (nothing changed): ``per poll`` records each answer in a transaction of its own, as
before quiet answers were batched, and ``batched`` is the code as it is (one statement per
batch for the quiet answers).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bench_load import process_cpu
from bench_seed import drop_database, fresh_database
from sqlalchemy import select

from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.deliveries import ledger
from rxroute.deliveries.sending import RetryScheduler, send
from rxroute.heap import settle_heap
from rxroute.logging import configure_logging
from rxroute.models import Pharmacy, Prescription
from rxroute.prescriptions.history import lock_prescription
from rxroute.prescriptions.lifecycle import Source
from rxroute.runtime import Runtime, start_runtime, stop_runtime
from rxroute.seed.service import add_prescriptions, seed_demo
from rxroute.webhooks import reconciliation
from rxroute.webhooks.tasks import reconcile_once

RXROUTE = Path(sys.executable).with_name("rxroute")


@dataclass
class Sweep:
    """One timed sweep: how many were polled, in what wall time, and the CPU it took here
    (this process: rxroute's reconciliation) and in the sandbox (the platform's side, which
    shares this machine's cores, so it is part of what limits the rate here)."""

    level: int
    mode: str
    polled: int
    seconds: float
    rxroute_cpu: float
    sandbox_cpu: float

    @property
    def rate(self) -> float:
        return self.polled / self.seconds

    def cpu_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.polled if self.polled else float("nan")


async def queue_sends(runtime: Runtime, count: int) -> list[uuid.UUID]:
    """N Region B prescriptions queued for the platform, as POST .../send leaves them."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2)  # alternates regions A and B
        pharmacies = list(
            await session.scalars(
                select(Pharmacy).where(Pharmacy.region == "B", Pharmacy.active.is_(True))
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
        for index, prescription_id in enumerate(ids):
            pharmacy = pharmacies[index % len(pharmacies)]
            prescription = await lock_prescription(session, prescription_id)
            prescription.channel = "erx"
            prescription.pharmacy_id = pharmacy.id
            await ledger.open_delivery(
                session,
                prescription,
                pharmacy=pharmacy,
                region="B",
                channel="erx",
                source=Source.PATIENT,
                actor=None,
                reason=None,
            )
    return ids


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        for _ in range(200):
            try:
                await http.get("/_sandbox/stats")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise SystemExit("the sandbox did not start")


async def main(count: int, levels: list[int], latency_ms: int, modes: list[str]) -> None:
    configure_logging("WARNING", json=False)
    port = free_port()
    command = [str(RXROUTE), "sandbox", "--port", str(port), "--sign-delay", "0"]
    command += ["--latency-ms", str(latency_ms)]
    sandbox = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    var_dir = Path(tempfile.mkdtemp(prefix="rxroute-bench-reconcile-"))
    url, admin = fresh_database(var_dir)
    results: list[Sweep] = []
    errors = 0
    try:
        await wait_up(base_url)
        await asyncio.to_thread(migrate.upgrade, url)
        settings = Settings(
            database_url=url,
            erx_base_url=base_url,
            erx_clinic_id=994,
            db_pool_size=max(10, max(levels) + 2),
            # The platform client is sized once, from these settings (connections kept
            # alive per worker process): for the largest level timed here.
            reconcile_concurrency=max(levels),
            reconcile_budget_seconds=3600,
            log_level="WARNING",
            _env_file=None,
        )
        runtime = await start_runtime(settings, url)
        settle_heap()  # as `rxroute worker` does once started
        try:
            print(f"issuing {count} Region B prescriptions on the sandbox ...", flush=True)
            ids = await queue_sends(runtime, count)
            gate = asyncio.Semaphore(8)

            async def issue(prescription_id: uuid.UUID) -> str:
                async with gate:
                    # The loaded machine's sandbox can drop a connection: send again, as the
                    # job's retry would.
                    for _ in range(5):
                        outcome = await send(
                            runtime, prescription_id, schedule_retry=RetryScheduler()
                        )
                        if outcome.result != "retry":
                            break
                    return outcome.result

            outcomes = await asyncio.gather(*(issue(i) for i in ids))
            if set(outcomes) != {"issued"}:
                raise SystemExit(f"not all issued: {Counter(outcomes)}")
            # The first sweep finds every prescription signed on the platform (issued here):
            # each answer is a change, recorded through the status path.
            later = datetime.now(UTC) + timedelta(seconds=settings.reconcile_after_seconds + 1)
            started = time.perf_counter()
            counts = await reconcile_once(now=later)
            changing = (counts["polled"], time.perf_counter() - started)
            if counts["changed"] + counts["errors"] != count:
                raise SystemExit(f"changing sweep: {counts}")
            errors = counts["errors"]
            # Then quiet sweeps (nothing changed on the platform), interleaved per level:
            # answers recorded one transaction each as before (``per poll``), and batched.
            for level in levels:
                runtime.settings = settings.model_copy(update={"reconcile_concurrency": level})
                for mode in modes:
                    later += timedelta(seconds=settings.reconcile_after_seconds + 1)
                    started = time.perf_counter()
                    cpu = time.process_time()
                    sandbox_cpu = sum(process_cpu(sandbox.pid))
                    with recording(mode):
                        counts = await reconcile_once(now=later)
                    results.append(
                        Sweep(
                            level,
                            mode,
                            counts["polled"],
                            time.perf_counter() - started,
                            time.process_time() - cpu,
                            sum(process_cpu(sandbox.pid)) - sandbox_cpu,
                        )
                    )
                    # A poll that failed (the loaded machine's sandbox can drop a
                    # connection) backs off and is not asked again by the next sweeps.
                    errors += counts["errors"]
                    if counts["polled"] + errors < count or counts["changed"]:
                        raise SystemExit(f"concurrency {level}, {mode}: {counts}")
        finally:
            await stop_runtime()
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        drop_database(url, admin)
    print(f"prescriptions: {count}; sandbox latency per call: {latency_ms} ms (separate process)")
    polled, seconds = changing
    print(f"failed polls (backed off, left out of the rates): {errors}")
    print(
        f"changing sweep (issued -> signed, status path each), concurrency "
        f"{settings.reconcile_concurrency}: {polled / seconds:8.1f} polled/s ({seconds:6.2f} s)"
    )
    for result in results:
        print(
            f"quiet sweep, concurrency {result.level:3d}, {result.mode:<8}: "
            f"{result.rate:8.1f} polled/s ({result.seconds:6.2f} s); "
            f"100k in {100_000 / result.rate / 60:6.1f} min; CPU per poll: rxroute "
            f"{result.cpu_ms(result.rxroute_cpu):.2f} ms, sandbox "
            f"{result.cpu_ms(result.sandbox_cpu):.2f} ms"
        )


@contextmanager
def recording(mode: str) -> Iterator[None]:
    """``per poll``: every answer through the status path in a transaction of its own, as
    before quiet answers were batched (no candidate is marked quiet); ``batched``: as is."""
    if mode == "batched":
        yield
        return
    real = reconciliation.load_batch

    async def unbatched(*args: Any, **kwargs: Any) -> reconciliation.Batch:
        batch = await real(*args, **kwargs)
        batch.ready = [replace(item, quiet_status=None) for item in batch.ready]
        return batch

    reconciliation.load_batch = unbatched  # type: ignore[assignment]
    try:
        yield
    finally:
        reconciliation.load_batch = real  # type: ignore[assignment]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prescriptions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["per poll", "batched"],
        default=["per poll", "batched"],
        help="quiet sweeps to time per concurrency (--modes batched: the code as it is)",
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.prescriptions, arguments.concurrency, arguments.latency_ms, arguments.modes)
    )
