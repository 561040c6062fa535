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

``--seed direct`` issues only two through the send path and writes the rest in bulk as the
send path leaves them (``reconcile_seed.py``: 100,000 in about 4 minutes where sending takes
over an hour), the sandbox learning them from its state file across a restart; it checks one
seeded prescription against a sent one (every table the send path writes for it, the
reconciler's batch loading, the sandbox's copy) before anything is timed. The platform keeps
them issued (a sign delay of a day), so there is no changing sweep: every sweep is quiet.
``--sweep worker`` then times the sweep as deployed, by a real ``rxroute worker`` running the
periodic job, until every seeded one has been polled once (``reconcile_worker.py``)::

    python bench/bench_reconcile.py --prescriptions 100000 --seed direct --sweep worker \
        --latency-ms 100 --worker-env --worker-env RXROUTE_RECONCILE_CONCURRENCY=32
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bench_load import process_cpu
from bench_seed import drop_database, fresh_database
from reconcile_seed import (
    add_to_state_file,
    compare_for_reconciler,
    compare_platform_copies,
    compare_rows,
    seed_in_flight,
)
from reconcile_worker import (
    WorkerSweep,
    as_if_heard_an_hour_earlier,
    issued_window,
    run_worker_sweep,
)
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
from rxroute.seed.service import BULK_NOTES, add_prescriptions, seed_demo
from rxroute.webhooks import reconciliation
from rxroute.webhooks.tasks import reconcile_once

RXROUTE = Path(sys.executable).with_name("rxroute")
#: ``--seed direct``: how many go through the real send path, to check the seeded ones by.
SENT_FOR_COMPARISON = 2
#: ``--seed direct``: the sandbox keeps its prescriptions issued this long (a day), so the
#: sweep is quiet throughout, as the seeded rows say (issued, not yet signed).
SIGN_DELAY_DIRECT = 86400


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


async def region_b_drafts(runtime: Runtime, count: int) -> list[uuid.UUID]:
    """The demo data and N Region B drafts (``add_prescriptions`` alternates the regions)."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2)
        return list(
            await session.scalars(
                select(Prescription.id)
                # The bulk ones only: the seeded check needs a seeded prescription of the
                # sent one's prescriber. Bulk prescriptions take the prescribers in turn;
                # a demo draft's prescriber may have no Region B bulk prescription at all.
                .where(
                    Prescription.region == "B",
                    Prescription.status == "draft",
                    Prescription.notes == BULK_NOTES,
                )
                .order_by(Prescription.id)
                .limit(count)
            )
        )


async def queue_sends(runtime: Runtime, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """These drafts queued for the platform, as POST .../send leaves them."""
    async with runtime.sessionmaker() as session, session.begin():
        pharmacies = list(
            await session.scalars(
                select(Pharmacy).where(Pharmacy.region == "B", Pharmacy.active.is_(True))
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


async def wait_up(url: str, seconds: float = 10) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                await http.get("/_sandbox/clock")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise SystemExit("the sandbox did not start")


@dataclass
class Options:
    count: int
    levels: list[int]
    latency_ms: int
    modes: list[str]
    seed: str
    sweep: str
    #: ``--sweep worker``: one sweep per entry, each with these settings beyond the defaults.
    worker_env: list[list[str]]


def start_sandbox(port: int, options: Options, state_file: Path) -> subprocess.Popen[bytes]:
    """The sandbox in its own process. Seeded directly, its prescriptions stay issued (a sign
    delay of a day), so every poll is quiet; sent, they are signed at once and the first sweep
    is all changes."""
    sign_delay = SIGN_DELAY_DIRECT if options.seed == "direct" else 0
    command = [str(RXROUTE), "sandbox", "--port", str(port), "--sign-delay", str(sign_delay)]
    command += ["--latency-ms", str(options.latency_ms), "--state-file", str(state_file)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def issue_all(runtime: Runtime, ids: list[uuid.UUID]) -> None:
    """Queue these drafts and send each through the real send path, 8 at a time."""
    await queue_sends(runtime, ids)
    gate = asyncio.Semaphore(8)

    async def issue(prescription_id: uuid.UUID) -> str:
        async with gate:
            # The loaded machine's sandbox can drop a connection: send again, as the job's
            # retry would.
            for _ in range(5):
                outcome = await send(runtime, prescription_id, schedule_retry=RetryScheduler())
                if outcome.result != "retry":
                    break
            return outcome.result

    outcomes = await asyncio.gather(*(issue(i) for i in ids))
    if set(outcomes) != {"issued"}:
        raise SystemExit(f"not all issued: {Counter(outcomes)}")


async def seed_directly(
    runtime: Runtime,
    url: str,
    sent: uuid.UUID,
    ids: list[uuid.UUID],
    restart: Callable[[Callable[[], None]], Awaitable[str]],
    state_file: Path,
) -> None:
    """``ids`` written as issued (reconcile_seed.py), the sandbox restarted on its state file
    with them added, then one checked against ``sent``, issued through the send path."""
    started = time.perf_counter()
    base_url = runtime.settings.erx_base_url
    platform = await seed_in_flight(runtime, url, ids, base_url, issued_window(datetime.now(UTC)))
    # Added while the sandbox is stopped: it writes its state file on the way out (and only
    # once a second while it runs, so a small run may have none yet).
    base_url = await restart(lambda: add_to_state_file(state_file, platform))
    print(f"seeded {len(ids)} in {time.perf_counter() - started:.0f} s", flush=True)
    async with runtime.sessionmaker() as session:
        sent_row = await session.get_one(Prescription, sent)
        # One of the same prescriber: the platform issues under the prescriber's own id.
        seeded_row = await session.scalar(
            select(Prescription)
            .where(
                Prescription.id.in_(ids[:50]),
                Prescription.prescriber_id == sent_row.prescriber_id,
            )
            .limit(1)
        )
    assert seeded_row is not None, "no seeded prescription shares the sent one's prescriber"
    compare_rows(url, sent, seeded_row.id)
    await compare_for_reconciler(runtime, sent, seeded_row.id)
    refs = [sent_row.provider_prescription_id, seeded_row.provider_prescription_id]
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        copies = [(await http.get(f"/_sandbox/prescriptions/{ref}")).json() for ref in refs]
    compare_platform_copies(*copies)
    print("a seeded prescription matches one sent through the send path", flush=True)


async def main(options: Options) -> None:
    configure_logging("WARNING", json=False)
    count, levels = options.count, options.levels
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    var_dir = Path(tempfile.mkdtemp(prefix="rxroute-bench-reconcile-"))
    state_file = var_dir / "sandbox-state.json"
    sandbox = start_sandbox(port, options, state_file)
    url, admin = fresh_database(var_dir)
    results: list[Sweep] = []
    changing: tuple[int, float] | None = None
    worker_results: list[tuple[list[str], WorkerSweep]] = []
    errors = 0

    async def restart(while_stopped: Callable[[], None]) -> str:
        nonlocal sandbox
        sandbox.terminate()  # it saves its state file on the way out
        sandbox.wait(timeout=60)
        while_stopped()
        sandbox = start_sandbox(port, options, state_file)
        await wait_up(base_url, seconds=120)
        return base_url

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
            ids = await region_b_drafts(runtime, count)
            direct = options.seed == "direct"
            sent = ids[:SENT_FOR_COMPARISON] if direct else ids
            print(f"issuing {len(sent)} Region B prescriptions on the sandbox ...", flush=True)
            await issue_all(runtime, sent)
            later = datetime.now(UTC) + timedelta(seconds=settings.reconcile_after_seconds + 1)
            if direct:
                print(f"seeding {count - len(sent)} directly ...", flush=True)
                await seed_directly(runtime, url, sent[0], ids[len(sent) :], restart, state_file)
            else:
                # The first sweep finds every prescription signed on the platform (issued
                # here): each answer is a change, recorded through the status path.
                started = time.perf_counter()
                counts = await reconcile_once(now=later)
                changing = (counts["polled"], time.perf_counter() - started)
                if counts["changed"] + counts["errors"] != count:
                    raise SystemExit(f"changing sweep: {counts}")
                errors = counts["errors"]
            seeded_before = datetime.now(UTC) - timedelta(minutes=10)
            for index, extra in enumerate(options.worker_env if options.sweep == "worker" else []):
                if index:
                    await asyncio.to_thread(as_if_heard_an_hour_earlier, url)
                described = " ".join(extra) or "default settings"
                print(f"a real worker sweeps them ({described}) ...", flush=True)
                sweep = await asyncio.to_thread(
                    run_worker_sweep, url, base_url, sandbox.pid, seeded_before, extra, var_dir
                )
                print(f"  {sweep.describe()}", flush=True)
                worker_results.append((extra, sweep))
            # Quiet sweeps (nothing changed on the platform), interleaved per level:
            # answers recorded one transaction each as before (``per poll``), and batched.
            for level in levels if options.sweep == "in-process" else []:
                runtime.settings = settings.model_copy(update={"reconcile_concurrency": level})
                for mode in options.modes:
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
        sandbox.wait(timeout=60)
        drop_database(url, admin)
        shutil.rmtree(var_dir, ignore_errors=True)
    latency = options.latency_ms
    print(f"prescriptions: {count}; sandbox latency per call: {latency} ms (separate process)")
    for extra, sweep in worker_results:
        print(f"worker sweep ({' '.join(extra) or 'default settings'}): {sweep.describe()}")
    print(f"failed polls (backed off, left out of the rates): {errors}")
    if changing is not None:
        polled, seconds = changing
        print(
            f"changing sweep (issued -> signed, status path each), concurrency "
            f"{max(levels)}: {polled / seconds:8.1f} polled/s ({seconds:6.2f} s)"
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
    parser.add_argument(
        "--seed",
        choices=["send", "direct"],
        default="send",
        help="send: every prescription through the real send path; direct: "
        f"{SENT_FOR_COMPARISON} sent, the rest written in bulk (reconcile_seed.py)",
    )
    parser.add_argument(
        "--sweep",
        choices=["in-process", "worker"],
        default="in-process",
        help="in-process: reconcile_once per concurrency and mode; worker: a real `rxroute "
        "worker` running the periodic job until every seeded one is polled (--seed direct)",
    )
    parser.add_argument(
        "--worker-env",
        nargs="*",
        action="append",
        metavar="NAME=VALUE",
        help="--sweep worker: one sweep with these settings beyond the defaults, e.g. "
        "RXROUTE_RECONCILE_CONCURRENCY=24; repeat for more sweeps of the same prescriptions "
        "(each later one as if the one before was an hour ago); none: one, at the defaults",
    )
    arguments = parser.parse_args()
    if arguments.sweep == "worker" and arguments.seed != "direct":
        parser.error("--sweep worker needs --seed direct (prescriptions quiet for 15 minutes)")
    asyncio.run(
        main(
            Options(
                arguments.prescriptions,
                arguments.concurrency,
                arguments.latency_ms,
                arguments.modes,
                arguments.seed,
                arguments.sweep,
                arguments.worker_env or [[]],
            )
        )
    )
