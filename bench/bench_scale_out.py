"""Scale-out proof and figures: 2 ``rxroute serve`` + 3 ``rxroute worker`` processes.

Run by hand from the repository root::

    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_scale_out.py --sends 1000 --kills 4
    .venv/bin/python bench/bench_scale_out.py --kills 0     # throughput without SIGKILLs

It makes a fresh database, runs the harness in tests/scale_out.py (the same one
tests/deliveries/test_scale_out.py runs with 150 sends in the suite), and prints:

* sends/s for the whole run (all prescriptions sent through both web processes' API until
  each reached the platform) and send jobs/s per worker process over its life;
* the platform's fault counters, the peak database connections;
* rows and bytes per prescription of the tables that grow with sends (for sizing);
* PASS, or FAIL with every failed check (exit status 1).

SIGKILLed workers' jobs wait for the stalled-job retry (8 s here), so a run with kills is
slower than one without: compare ``--kills 0`` for raw throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from bench_seed import drop_database, fresh_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.runtime import start_runtime, stop_runtime
from tests.scale_out import ScaleOutPlan, ScaleOutResult, run_scale_out, table_sizes

PER_PRESCRIPTION = {"prescriptions", "prescription_items"}


def report(result: ScaleOutResult, sizes: list[tuple[str, int, int]]) -> None:
    plan, stats = result.plan, result.stats
    print(
        f"\n{len(result.ids)} sends through {plan.servers} web + {plan.workers} worker processes "
        f"(concurrency {plan.concurrency or 'default'}), {result.kills} SIGKILLed and replaced"
    )
    print(
        f"  accepted per web process: {dict(result.accepted_by_server)}, all answered after "
        f"{result.accept_seconds:.1f} s"
    )
    print(
        f"  all sent after {result.send_seconds:.1f} s: {result.sends_per_second:.1f} sends/s; "
        f"settled after {result.settle_seconds:.1f} s"
    )
    for worker in result.per_worker:
        print(
            f"  {worker.name} (worker id {worker.worker_id}): {worker.send_jobs} send jobs in "
            f"{worker.seconds:.1f} s = {worker.per_second:.1f}/s"
            + (" (SIGKILLed)" if worker.killed else "")
        )
    print(
        f"  platform: {stats.get('prescriptions_issued')} copies, "
        f"{stats.get('injected_errors')} 5xx, {stats.get('injected_drops')} lost answers, "
        f"{stats.get('token_grants')} token grants, {stats.get('webhook_events')} webhook events, "
        f"{stats.get('webhook_duplicates_sent')} duplicated, "
        f"{stats.get('webhooks_reordered')} reordered, "
        f"{stats.get('webhook_attempts_dropped')} tries lost"
    )
    print(f"  statuses: {dict(result.statuses)}; jobs left: {result.jobs_left}")
    print(f"  peak database connections (all processes + this harness): {result.peak_connections}")
    print("\n  table                          rows   bytes   rows/presc  bytes/presc")
    sends = len(result.ids)
    total = 0.0
    prescriptions = next(rows for table, rows, _ in sizes if table == "prescriptions")
    for table, rows, size in sizes:
        # Prescriptions and their items exist per prescription; the rest grow per send.
        per = prescriptions if table in PER_PRESCRIPTION else sends
        total += size / per if per else 0
        print(
            f"  {table:28} {rows:7} {size:8} {rows / per if per else 0:10.1f} "
            f"{size / per if per else 0:11.0f}"
        )
    print(f"  about {total / 1024:.1f} kB per sent prescription (indexes included)")


async def main(plan: ScaleOutPlan) -> int:
    with tempfile.TemporaryDirectory(prefix="rxroute-scale-") as folder:
        url, admin = fresh_database(Path(folder))
        try:
            migrate.upgrade(url)
            settings = Settings(database_url=url, erx_clinic_id=994, _env_file=None)  # type: ignore[call-arg]
            runtime = await start_runtime(settings, url)
            try:
                result = await run_scale_out(runtime, url, Path(folder), plan)
                sizes = await table_sizes(runtime)
            finally:
                await stop_runtime()
        finally:
            drop_database(url, admin)
    report(result, sizes)
    failures = result.failures()
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else f"FAIL ({len(failures)} checks)")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=None, help="default: the setting's")
    args = parser.parse_args()
    plan = ScaleOutPlan(
        sends=args.sends,
        kills=args.kills,
        servers=args.servers,
        workers=args.workers,
        concurrency=args.concurrency,
        send_timeout=900,
        settle_timeout=300,
    )
    sys.exit(asyncio.run(main(plan)))
