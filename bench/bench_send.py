"""Region B sends per second through the real worker, and what authentication costs.

Run by hand::

    python bench/bench_send.py                       # embedded PostgreSQL in a temp folder
    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python bench/bench_send.py --sends 1000 --concurrency 8

It starts the provider sandbox on a free 127.0.0.1 port and a fresh database, seeds the demo
accounts (aligned with the sandbox), queues N Region B prescriptions the way the send endpoint
does (status ``queued`` and a procrastinate job in one transaction), then runs the real
procrastinate worker until the queue is empty. It reports:

* sends per second through the worker (queue fetch, job, database writes, client, sandbox);
* token grants and prescriber logins per 1,000 sends, from ``GET /_sandbox/stats``
  (issue 4's target at default token lifetimes: at most 2 of each);
* a baseline measured in the same run: the same number of issue calls made straight to the
  sandbox with raw httpx (tokens fetched once, no database, no checks) at the same
  concurrency, and the ratio between the two.

The sandbox runs in a thread of this process, so both numbers share one CPU budget; compare
the ratio, not the absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from bench_seed import drop_database, fresh_database
from sqlalchemy import func, select

from rxroute.apiclients.scopes import Scope
from rxroute.apiclients.service import create_client
from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.deliveries.commands import request_send
from rxroute.jobs import queue
from rxroute.logging import configure_logging
from rxroute.models import Pharmacy, Prescription
from rxroute.prescriptions.tasks import defer_send
from rxroute.runtime import Runtime, start_runtime, stop_runtime
from rxroute.sandbox import SandboxServer, load_config
from rxroute.seed.service import add_prescriptions, seed_demo

CLIENT_ID = "rxroute-demo-client"
CLIENT_SECRET = "demo-only-sandbox-client-secret"
ALICE = ("dr.alice.hartfield@example.com", "sandbox-prescriber-alice", "123456")


async def queue_sends(runtime: Runtime, count: int) -> list[uuid.UUID]:
    """N Region B prescriptions queued with their jobs, as POST .../send leaves them."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2)  # alternates regions A and B
    async with runtime.sessionmaker() as session, session.begin():
        pharmacies = list(
            await session.scalars(
                select(Pharmacy)
                .where(Pharmacy.region == "B", Pharmacy.active.is_(True))
                .order_by(Pharmacy.platform_contact_id)
            )
        )
        ids = list(
            await session.scalars(
                select(Prescription.id)
                .where(Prescription.region == "B", Prescription.notes == "Bulk test prescription")
                .order_by(Prescription.id)
                .limit(count)
            )
        )
        # The same command POST .../send runs (a delivery opened, the status queued), as an
        # integrating platform's key would ask for it.
        platform = await create_client(
            session, name="bench platform", scopes=[Scope.PRESCRIPTIONS_SEND]
        )
        for index, prescription_id in enumerate(ids):
            pharmacy = pharmacies[index % len(pharmacies)]
            await request_send(
                session,
                runtime,
                platform.client,
                prescription_id,
                region="B",
                pharmacy_id=pharmacy.id,
            )
            await defer_send(session, prescription_id)
    return ids


async def sandbox_stats(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.get("/_sandbox/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats


def raw_payload(client_ref_id: str) -> dict[str, Any]:
    return {
        "action": "issueToContact",
        "clinic_id": 994,
        "contact_id": 5001,
        "secure_pin": ALICE[2],
        "prescriber_ip": "203.0.113.7",
        "notify": True,
        "client_ref_id": client_ref_id,
        "notes": "Bench baseline",
        "patient": {
            "first_name": "Bench",
            "last_name": "Testpatient",
            "gender": "Female",
            "email": "bench@example.com",
            "phone": "447700900123",
            "birth_day": "07",
            "birth_month": "03",
            "birth_year": "1985",
            "address_ln1": "1 High Street",
            "address_ln2": "",
            "city": "Leeds",
            "post_code": "LS1 4AP",
            "country": "GB",
        },
        "medicines": [
            {"description": "Semaglutide 0.25mg pen", "qty": "1", "directions": "Weekly"}
        ],
    }


async def baseline(base_url: str, count: int, concurrency: int) -> float:
    """Seconds for ``count`` raw issue calls at ``concurrency``, tokens fetched once up front."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        token = await http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
        access = token.json()["access_token"]
        login = await http.post(
            "/api/v1/login",
            headers={"Authorization": f"Bearer {access}"},
            json={"email": ALICE[0], "password": ALICE[1]},
        )
        headers = {
            "Authorization": f"Bearer {access}",
            "X-Prescriber-Token": login.json()["data"]["token"],
        }
        gate = asyncio.Semaphore(concurrency)
        failures = 0

        async def one(index: int) -> None:
            nonlocal failures
            async with gate:
                response = await http.post(
                    "/api/v1/prescriptions",
                    headers=headers,
                    json=raw_payload(f"baseline-{index}"),
                )
                if not response.json().get("success"):
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"baseline: {failures} raw issue calls failed")
    return elapsed


async def main(sends: int, concurrency: int) -> None:
    configure_logging("WARNING", json=False)
    var_dir = Path(tempfile.mkdtemp(prefix="rxroute-bench-send-"))
    url, admin = fresh_database(var_dir)
    config = load_config(None)
    config = config.model_copy(
        update={"timings": config.timings.model_copy(update={"sign_delay_seconds": 0.0})}
    )
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        async with SandboxServer(config, host="127.0.0.1", port=0) as sandbox:
            settings = Settings(
                database_url=url,
                erx_base_url=sandbox.url,
                erx_clinic_id=994,
                worker_concurrency=concurrency,
                db_pool_size=max(10, concurrency + 2),
                log_level="WARNING",
                # The patient's status emails would need a mail server, and are not the
                # send path this measures.
                patient_notifications=False,
                _env_file=None,
            )
            runtime = await start_runtime(settings, url)
            try:
                print(f"queueing {sends} Region B sends ...", flush=True)
                ids = await queue_sends(runtime, sends)
                before = await sandbox_stats(sandbox.url)
                started = time.perf_counter()
                await queue.run_worker_async(
                    wait=False,
                    concurrency=concurrency,
                    install_signal_handlers=False,
                    listen_notify=False,
                )
                worker_seconds = time.perf_counter() - started
                after = await sandbox_stats(sandbox.url)
                async with runtime.sessionmaker() as session:
                    issued = await session.scalar(
                        select(func.count())
                        .select_from(Prescription)
                        .where(Prescription.id.in_(ids), Prescription.status == "issued")
                    )
            finally:
                await stop_runtime()
            raw_seconds = await baseline(sandbox.url, sends, concurrency)
    finally:
        drop_database(url, admin)

    grants = after["token_grants"] - before["token_grants"]
    logins = after["prescriber_logins"] - before["prescriber_logins"]
    per_thousand = 1000 / sends
    worker_rate = sends / worker_seconds
    raw_rate = sends / raw_seconds
    duplicates = sum(1 for ref in map(str, ids) if after["issued_by_client_ref_id"].get(ref, 0) > 1)
    print(f"sends:                          {sends} (worker concurrency {concurrency})")
    print(f"issued:                         {issued} ({duplicates} issued more than once)")
    print(f"through the worker:             {worker_rate:8.1f} sends/s ({worker_seconds:.2f} s)")
    print(f"baseline, raw httpx issue:      {raw_rate:8.1f} sends/s ({raw_seconds:.2f} s)")
    print(f"worker / baseline:              {worker_rate / raw_rate:8.2f}")
    print(
        f"token grants per 1,000 sends:   {grants * per_thousand:8.1f} ({grants} in total; "
        "target <= 2)"
    )
    print(
        f"prescriber logins per 1,000:    {logins * per_thousand:8.1f} ({logins} in total; "
        "target <= 2 per prescriber)"
    )
    if issued != sends or duplicates:
        raise SystemExit("not every prescription was issued exactly once")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sends", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8, help="worker concurrency")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.sends, arguments.concurrency))
