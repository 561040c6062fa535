"""The scale-out harness: 2 ``rxroute serve`` + 3 ``rxroute worker`` processes, one database.

Shared by tests/deliveries/test_scale_out.py (150 sends, in the suite) and
bench/bench_scale_out.py (1,000 sends, by hand, with figures). One run:

1. seeds the demo accounts and N Region B drafts, and makes an API key (prescriptions:send);
2. starts the provider sandbox **in its own process** (``rxroute sandbox``) with faults:
   5xx, requests processed then left unanswered, short-lived tokens, and webhooks
   duplicated, reordered and lost (then retried); its webhooks go to the first web process;
3. starts the web processes and the workers (real subprocesses of the installed CLI);
4. sends every prescription through ``POST /api/v1/prescriptions/{id}/send``, alternating
   between the web processes, while a killer SIGKILLs a worker (and starts a replacement)
   each time another share of the sends has reached the platform;
5. dispenses every ``dispense_every``-th prescription on the platform once it is signed, so
   some end final (``dispensed``) and the rest open (``signed``);
6. waits until the run is **settled**: the sandbox has no webhook left to deliver, no send or
   webhook-processing job is todo/doing, and every prescription's status in rxroute equals
   the platform's. Until then a difference is only a webhook on its way (``issued`` here,
   ``signed`` there); once nothing is in flight, any difference left is a real one.

:meth:`ScaleOutResult.failures` then lists what is wrong: more or fewer than one platform copy
per prescription (``/_sandbox/stats`` ``issued_by_client_ref_id``), a status that differs, a
send job left behind, a refused send request, a traceback in any process log, or faults that
never fired (a run without faults would prove nothing).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text

from rxroute.apiclients.scopes import Scope
from rxroute.models import Pharmacy, Prescription
from rxroute.runtime import Runtime
from rxroute.seed.service import add_prescriptions, seed_demo
from tests.apiclients.helpers import bearer, make_api_key
from tests.erx_sandbox import sandbox_config
from tests.processes import (
    ManagedProcess,
    Workers,
    free_port,
    rxroute_env,
    sandbox_stats,
    scalar,
    start_sandbox,
    start_server,
    stop,
    wait_for_http,
)

FAULTS: dict[str, Any] = {
    "error_rate": 0.1,
    "drop_after_processing_rate": 0.1,
    "access_token_ttl_seconds": 30,
    "session_token_ttl_seconds": 30,
    "webhook_duplicate_rate": 0.2,
    "webhook_reorder_rate": 0.2,
    "webhook_drop_rate": 0.05,
}
#: Platform timings shrunk so webhook retries and signing happen within the run.
TIMINGS: dict[str, Any] = {
    "sign_delay_seconds": 0.5,
    "webhook_backoff_seconds": 0.5,
    "webhook_backoff_max_seconds": 4.0,
    "reorder_hold_seconds": 1.0,
}
SENT = {"issued", "signed", "printed", "dispensed"}
JOBS_LEFT = (
    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task "
    "AND status IN ('todo', 'doing')"
)
#: The tables that grow with prescriptions and sends, for the sizing figures.
SIZED_TABLES = (
    "prescriptions",
    "prescription_items",
    "prescription_status_events",
    "deliveries",
    "delivery_attempts",
    "inbound_webhook_events",
    "outbox_events",
    "procrastinate_jobs",
    "procrastinate_events",
)


@dataclass
class ScaleOutPlan:
    sends: int
    servers: int = 2
    workers: int = 3
    #: SIGKILLs, spread evenly over the sends (each followed by a replacement worker).
    kills: int = 2
    #: None: the worker's default (``RXROUTE_WORKER_CONCURRENCY``, 4).
    concurrency: int | None = None
    http_concurrency: int = 8
    dispense_every: int = 10
    send_timeout: float = 240
    settle_timeout: float = 120


@dataclass
class WorkerFigure:
    name: str
    worker_id: int | None
    send_jobs: int
    seconds: float
    killed: bool

    @property
    def per_second(self) -> float:
        return self.send_jobs / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ScaleOutResult:
    plan: ScaleOutPlan
    ids: list[uuid.UUID] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    accepted_by_server: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    #: From the first send request to the last one answered.
    accept_seconds: float = 0.0
    #: From the first send request to the last prescription reaching the platform.
    send_seconds: float = 0.0
    settle_seconds: float = 0.0
    settled: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    mismatches: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    jobs_left: dict[str, int] = field(default_factory=dict)
    per_worker: list[WorkerFigure] = field(default_factory=list)
    peak_connections: int = 0
    tracebacks: list[str] = field(default_factory=list)

    @property
    def sends_per_second(self) -> float:
        return len(self.ids) / self.send_seconds if self.send_seconds else 0.0

    def failures(self) -> list[str]:
        found: list[str] = []
        by_ref: dict[str, int] = self.stats.get("issued_by_client_ref_id", {})
        missing = {str(pid) for pid in self.ids} - set(by_ref)
        if missing:
            found.append(f"{len(missing)} prescriptions never reached the platform")
        strangers = set(by_ref) - {str(pid) for pid in self.ids}
        if strangers:
            found.append(f"{len(strangers)} platform copies of unknown prescriptions")
        twice = {ref: n for ref, n in by_ref.items() if n != 1}
        if twice:
            found.append(f"issued more than once: {twice}")
        if self.refused:
            found.append(f"{len(self.refused)} send requests refused: {self.refused[:3]}")
        if not self.settled:
            found.append(f"not settled after {self.plan.settle_timeout:g} s")
        if self.mismatches:
            sample = dict(list(self.mismatches.items())[:5])
            found.append(f"{len(self.mismatches)} statuses differ (ours, platform's): {sample}")
        if self.jobs_left.get("send_prescription"):
            found.append(f"send jobs left todo/doing: {self.jobs_left}")
        if self.kills < self.plan.kills:
            found.append(f"only {self.kills} of {self.plan.kills} workers SIGKILLed")
        if len(self.accepted_by_server) < self.plan.servers:
            found.append(f"not every web process took sends: {dict(self.accepted_by_server)}")
        for fault in ("injected_errors", "injected_drops", "webhook_duplicates_sent"):
            if not self.stats.get(fault):
                found.append(f"no {fault}: the run proved less than it claims")
        found.extend(f"traceback in a log:\n{log[-2000:]}" for log in self.tracebacks)
        return found


async def _seed(runtime: Runtime, count: int) -> tuple[list[uuid.UUID], list[uuid.UUID], str]:
    """(Region B draft ids, Region B pharmacy ids, an API key that may send)."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2 + 10)
    async with runtime.sessionmaker() as session:
        pharmacies = list(
            await session.scalars(
                select(Pharmacy.id)
                .where(Pharmacy.region == "B", Pharmacy.active.is_(True))
                .order_by(Pharmacy.platform_contact_id)
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
        key = await make_api_key(session, Scope.PRESCRIPTIONS_SEND, Scope.PRESCRIPTIONS_READ)
    assert len(ids) == count, len(ids)
    return ids, pharmacies, key


async def _statuses(runtime: Runtime, ids: list[uuid.UUID]) -> dict[str, str]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(Prescription.id, Prescription.status).where(Prescription.id.in_(ids))
        )
        return {str(pid): status for pid, status in rows}


async def _platform(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """The platform's prescriptions by client_ref_id (our prescription id)."""
    response = await http.get("/_sandbox/prescriptions")
    response.raise_for_status()
    return {p["client_ref_id"]: p for p in response.json()["prescriptions"]}


@dataclass
class _Run:
    runtime: Runtime
    plan: ScaleOutPlan
    workers: Workers
    result: ScaleOutResult
    send_jobs: dict[int, int] = field(default_factory=dict)

    async def sample(self) -> None:
        """Send jobs done per worker id (kept at their highest: a dead worker's row goes)."""
        while True:
            async with self.runtime.engine.connect() as connection:
                rows = await connection.execute(
                    text(
                        "SELECT worker_id, count(*) FROM procrastinate_jobs "
                        "WHERE task_name = 'send_prescription' AND status = 'succeeded' "
                        "AND worker_id IS NOT NULL GROUP BY worker_id"
                    )
                )
                for row in rows:
                    worker_id, count = int(row[0]), int(row[1])
                    self.send_jobs[worker_id] = max(count, self.send_jobs.get(worker_id, 0))
                # Every client of this database: the processes and the harness.
                peak = await connection.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                )
            self.result.peak_connections = max(self.result.peak_connections, int(peak or 0))
            await asyncio.sleep(0.5)

    async def kill_along_the_way(self) -> None:
        """SIGKILL the oldest live worker each time another share of the sends is out."""
        ids = self.result.ids
        marks = [len(ids) * (k + 1) // (self.plan.kills + 1) for k in range(self.plan.kills)]
        for mark in marks:
            while sum(s in SENT for s in (await _statuses(self.runtime, ids)).values()) < mark:
                await asyncio.sleep(0.2)
            victim = next(w for w in self.workers.started if w.alive())
            self.workers.kill(victim)
            self.result.kills += 1
            await self.workers.start(1, concurrency=self.plan.concurrency)

    async def send_all(self, servers: list[str], key: str, pharmacies: list[uuid.UUID]) -> None:
        limit = asyncio.Semaphore(self.plan.http_concurrency)

        async def one(http: httpx.AsyncClient, index: int, pid: uuid.UUID) -> None:
            server = servers[index % len(servers)]
            body = {"region": "B", "pharmacy_id": str(pharmacies[index % len(pharmacies)])}
            async with limit:
                response = await http.post(
                    f"{server}/api/v1/prescriptions/{pid}/send", json=body, headers=bearer(key)
                )
            if response.status_code == 202:
                self.result.accepted_by_server[server] += 1
            else:
                self.result.refused.append(f"{pid} {response.status_code} {response.text[:200]}")

        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            await asyncio.gather(*(one(http, i, pid) for i, pid in enumerate(self.result.ids)))

    async def settle(self, sandbox_url: str) -> None:
        """Dispense every n-th once signed; wait until nothing is in flight and all agree."""
        ids, plan = self.result.ids, self.plan
        to_dispense = {str(pid) for pid in ids[:: plan.dispense_every]}
        deadline = time.monotonic() + plan.settle_timeout
        async with httpx.AsyncClient(base_url=sandbox_url, timeout=30, trust_env=False) as http:
            while True:
                platform = await _platform(http)
                for ref in sorted(to_dispense):
                    copy = platform.get(ref)
                    if copy is not None and copy["status"] == "signed":
                        await http.post(f"/_sandbox/prescriptions/{copy['id']}/dispense")
                        to_dispense.discard(ref)
                ours = await _statuses(self.runtime, ids)
                mismatches = {
                    ref: (status, platform.get(ref, {}).get("status"))
                    for ref, status in ours.items()
                    if status != platform.get(ref, {}).get("status")
                }
                jobs = {
                    task: int(await scalar(self.runtime, JOBS_LEFT, task=task))
                    for task in ("send_prescription", "process_webhook_event")
                }
                pending = int((await sandbox_stats(sandbox_url))["webhooks_pending"])
                self.result.mismatches, self.result.jobs_left = mismatches, jobs
                quiet = pending == 0 and not any(jobs.values()) and not to_dispense
                if quiet and not mismatches:
                    self.result.settled = True
                    return
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(1)


async def run_scale_out(
    runtime: Runtime, database_url: str, folder: Path, plan: ScaleOutPlan
) -> ScaleOutResult:
    """One whole run (see the module docstring); every process is stopped before it returns."""
    result = ScaleOutResult(plan)
    result.ids, pharmacies, key = await _seed(runtime, plan.sends)
    ports = [free_port() for _ in range(plan.servers)]
    servers = [f"http://127.0.0.1:{port}" for port in ports]
    config = sandbox_config(**FAULTS)
    config = config.model_copy(update={"timings": config.timings.model_copy(update=TIMINGS)})
    sandbox, sandbox_url = start_sandbox(config, folder, webhook_url=f"{servers[0]}/webhooks/erx")
    others: list[ManagedProcess] = [sandbox]
    workers = Workers(runtime, database_url, folder, sandbox_url)
    run = _Run(runtime, plan, workers, result)
    sampler = asyncio.create_task(run.sample())
    try:
        await wait_for_http(sandbox, f"{sandbox_url}/_sandbox/stats", "the sandbox")
        env = rxroute_env(database_url, sandbox_url)
        for index, port in enumerate(ports):
            others.append(start_server(env, folder, index, port))
        for server, process in zip(servers, others[1:], strict=True):
            await wait_for_http(process, f"{server}/healthz", "rxroute serve")
        for _ in range(plan.workers):  # one at a time, to know each one's worker id
            await workers.start(1, concurrency=plan.concurrency)

        started = time.monotonic()
        killer = asyncio.create_task(run.kill_along_the_way())
        await run.send_all(servers, key, pharmacies)
        result.accept_seconds = time.monotonic() - started

        async def all_sent() -> bool:
            if killer.done():
                killer.result()  # a failed kill or restart fails the run here
            statuses = await _statuses(runtime, result.ids)
            return all(s in SENT for s in statuses.values())

        await _wait(all_sent, plan.send_timeout)
        result.send_seconds = time.monotonic() - started
        await asyncio.wait_for(killer, timeout=60)
        await run.settle(sandbox_url)
        result.settle_seconds = time.monotonic() - started
        result.stats = await sandbox_stats(sandbox_url)
        result.statuses = Counter((await _statuses(runtime, result.ids)).values())
        for worker in workers.started:
            alive_until = min(
                worker.stopped_at or started + result.send_seconds, started + result.send_seconds
            )
            result.per_worker.append(
                WorkerFigure(
                    name=worker.log_path.stem,
                    worker_id=worker.worker_id,
                    send_jobs=run.send_jobs.get(worker.worker_id or -1, 0),
                    seconds=max(0.0, alive_until - max(worker.started_at, started)),
                    killed=worker.stopped_at is not None,
                )
            )
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await asyncio.to_thread(workers.stop_all)
        await asyncio.to_thread(stop, others)
    result.tracebacks = [p.log() for p in [*workers.started, *others] if "Traceback" in p.log()]
    return result


async def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


async def table_sizes(runtime: Runtime) -> list[tuple[str, int, int]]:
    """(table, rows, bytes with indexes and TOAST) for the tables that grow with sends."""
    sizes = []
    for table in SIZED_TABLES:
        rows = int(await scalar(runtime, f"SELECT count(*) FROM {table}"))  # noqa: S608
        size = int(await scalar(runtime, "SELECT pg_total_relation_size(:t)", t=table))
        sizes.append((table, rows, size))
    return sizes
