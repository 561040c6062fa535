"""Region B sends per second through one real worker process, against the raw client.

Run by hand from the repository root::

    .venv/bin/python bench/bench_send.py                  # embedded PostgreSQL, temp folder
    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_send.py --sends 1000 --rounds 3

Everything runs in its own process, as in production: the provider sandbox
(``rxroute sandbox``), one ``rxroute worker`` at its default concurrency
(``RXROUTE_WORKER_CONCURRENCY``), PostgreSQL, and this script, which seeds a fresh database
and queues N Region B prescriptions the way the send endpoint does (a delivery opened, the
status queued and a procrastinate job, in one transaction) once the worker is listening.
It reports:

* sends per second through the worker: from the first send job's start to the last one's
  end, as procrastinate's own job events record them; the worker's CPU per send (from
  /proc, user and system apart) and the mean time inside one job;
* the baseline, measured in the same run against the same sandbox process: the same number
  of raw issue calls with httpx (the worker's HTTP stack), token and prescriber login fetched
  once up front, no database, at the same concurrency; and the ratio of the two;
* all of that in ``--rounds`` rounds (3 by default), each a batch through the worker then
  its raw calls right after, and the median ratio: on a shared host the machine's speed
  drifts by more over minutes than the changes being weighed, and each round's two windows
  are seconds apart;
* rxroute's own SQL per successful send, counted inside the worker
  (:mod:`rxroute.observability.sqlcount`, on by ``RXROUTE_SQL_COUNT_FILE``): round trips
  (every statement, including the pool's checkout pings, plus the BEGIN and COMMIT psycopg
  sends) and transactions (explicit ones plus autocommit statements, each a transaction of
  its own). procrastinate's own queue traffic (heartbeats, and finishing the jobs the
  record does not finish) goes through its separate pool and is not rxroute's: not counted.
  The send's own statements on a connection borrowed from that pool are
  (:func:`rxroute.observability.sqlcount.counted`), and so are the worker's fetches, which
  are rxroute's statements now: procrastinate's fetch function, called once per free slot,
  with the send's load riding on it (:mod:`rxroute.job_preloads`). A send's round trips are
  therefore the claim and the record, plus a fetch whenever a slot was idle: while jobs
  wait, each record takes its worker's next job with that job's load (the hand-off), so a
  busy worker spends no fetch between sends. Every statement the worker sends is counted.
  The worker's start-up statements are included (a handful, spread over N sends);
* token grants and prescriber logins per 1,000 sends (issue 4's target: at most 2 each);
* where the CPU went in each window (:mod:`machine_cpu`): per send, the worker, the sandbox,
  this script and every PostgreSQL process, and per raw call, the raw client and the
  sandbox; with how many of the machine's cores were busy. The worker's window runs from
  the commit that queues the sends until this script sees them all issued (it looks five
  times a second, so up to 0.2 s of the tail is idle).

Patient emails are off (``RXROUTE_PATIENT_NOTIFICATIONS=false``, as in tests/processes.py):
they would need a mail relay and are not the send path measured here;
tests/deliveries/test_send_budget.py counts a send with them on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import machine_cpu
import raw_issue
from bench_load import process_cpu
from bench_seed import drop_database, fresh_database
from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from rxroute.apiclients.scopes import Scope
from rxroute.apiclients.service import create_client
from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.deliveries.commands import request_send
from rxroute.logging import configure_logging
from rxroute.models import Pharmacy, Prescription
from rxroute.prescriptions.tasks import defer_send
from rxroute.runtime import Runtime, start_runtime, stop_runtime
from rxroute.sandbox import load_config
from rxroute.seed.service import BULK_NOTES, add_prescriptions, seed_demo
from tests.processes import (
    RXROUTE,
    ManagedProcess,
    rxroute_env,
    sandbox_stats,
    scalar,
    spawn,
    start_sandbox,
    stop,
    wait_for_http,
    wait_until,
)

COUNT_FILE = "sql-counts.json"


#: The worker under cProfile timed by CPU (process) time, not wall time: on a busy machine
#: wall time charges whatever ran when the OS switched away to the function that was running.
PROFILE_WORKER = """
import atexit, cProfile, runpy, sys, time
output = sys.argv[1]
sys.argv = sys.argv[2:]
profile = cProfile.Profile(time.process_time)
atexit.register(lambda: (profile.disable(), profile.dump_stats(output)))
profile.enable()
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def under_callgrind(output: Path, *, counting_from_start: bool = True) -> list[str]:
    """The command prefix that runs a program under callgrind, its count written to ``output``.

    Instructions, unlike CPU seconds, do not depend on what else the machine is doing (or
    on a shared host's other tenants), so two versions of the send path compare in one run
    each, where their CPU times differ by more from run to run than the change being weighed.
    Not counting from the start, it counts once told to (``callgrind_control -i``).
    """
    return [
        "valgrind",
        "--tool=callgrind",
        f"--instr-atstart={'yes' if counting_from_start else 'no'}",
        f"--callgrind-out-file={output}",
    ]


def instrument(worker: ManagedProcess, on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "--instr=" + ("on" if on else "off"), str(worker.pid)],
        check=True,
        capture_output=True,
    )


def instructions(output: Path) -> int:
    """The instructions callgrind counted in ``output`` (its ``totals:`` line)."""
    for line in output.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no instruction count in {output}")


def raw_instructions_per_call(base_url: str, calls: int, concurrency: int, folder: Path) -> float:
    """The raw client's instructions per issue call, under callgrind in a process of its own.

    Run twice, with ``calls`` calls and with none: the difference is the calls alone, without
    the interpreter's start-up, the imports and the token and login fetched up front.
    """
    counted = []
    for count in (calls, 0):
        output = folder / f"callgrind-raw-{count}.out"
        subprocess.run(
            [
                *under_callgrind(output),
                sys.executable,
                str(Path(raw_issue.__file__)),
                base_url,
                str(count),
                str(concurrency),
            ],
            check=True,
            capture_output=True,
        )
        counted.append(instructions(output))
    return (counted[0] - counted[1]) / calls


def wrapped_worker(prefix: list[str], env: dict[str, str], folder: Path) -> ManagedProcess:
    """``rxroute worker`` run by ``prefix`` (a profiler or callgrind), logging as spawn does."""
    log_path = folder / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*prefix, RXROUTE, "worker"],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ManagedProcess(process, log_path)


async def seed(runtime: Runtime, count: int) -> None:
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2)  # alternates regions A and B


async def bulk_region_b(runtime: Runtime) -> list[uuid.UUID]:
    async with runtime.sessionmaker() as session:
        return list(
            await session.scalars(
                select(Prescription.id)
                .where(Prescription.region == "B", Prescription.notes == BULK_NOTES)
                .order_by(Prescription.id)
            )
        )


async def queue_sends(runtime: Runtime, ids: list[uuid.UUID]) -> None:
    """These Region B prescriptions queued with their jobs, as POST .../send leaves them."""
    async with runtime.sessionmaker() as session, session.begin():
        pharmacies = list(
            await session.scalars(
                select(Pharmacy)
                .where(Pharmacy.region == "B", Pharmacy.active.is_(True))
                .order_by(Pharmacy.platform_contact_id)
            )
        )
        # The same command POST .../send runs (a delivery opened, the status queued), as an
        # integrating platform's key would ask for it.
        platform = await create_client(
            session, name=f"bench platform {uuid.uuid4()}", scopes=[Scope.PRESCRIPTIONS_SEND]
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


async def worker_window(runtime: Runtime, ids: list[uuid.UUID]) -> tuple[float, float]:
    """Seconds from the first send job's start to the last one's success, and the mean
    seconds one job ran (procrastinate's own event times, written by the worker)."""
    async with runtime.engine.connect() as connection:
        first, last, mean = (
            await connection.execute(
                text(
                    "WITH t AS (SELECT j.id, "
                    "  min(e.at) FILTER (WHERE e.type = 'started') AS started, "
                    "  max(e.at) FILTER (WHERE e.type = 'succeeded') AS done "
                    "FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
                    "WHERE j.task_name = 'send_prescription' "
                    "AND j.args->>'prescription_id' = ANY(:ids) GROUP BY j.id) "
                    "SELECT min(started), max(done), "
                    "       avg(extract(epoch FROM done - started)) FROM t"
                ),
                {"ids": [str(i) for i in ids]},
            )
        ).one()
    return float((last - first).total_seconds()), float(mean)


#: How many of these prescriptions are issued: one array parameter, not one bind per id. It
#: runs five times a second while the worker sends, on the same two cores: compiling an IN
#: list of 2,000 binds cost this script a fifth of a core, CPU the worker and PostgreSQL
#: lacked and the raw baseline (measured alone) did not.
ISSUED_AMONG = text(
    "SELECT count(*) FROM prescriptions WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'issued'"
)


#: Whether any send job still waits or runs: what the wait polls five times a second while
#: the worker sends, so it must cost next to nothing on the two cores the worker shares with
#: PostgreSQL (the raw client's window has no poller at all). A scan of the jobs table that
#: stops at the first waiting job: under half a millisecond at 8,000 jobs. Counting the
#: batch's issued prescriptions instead (:data:`ISSUED_AMONG`, 2,000 ids parsed and looked up
#: each time) cost this script about 0.05 ms of CPU per send and its backend as much again.
#: That count runs once the queue is drained, to check every send was issued.
SENDS_OUTSTANDING = (
    "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs "
    "WHERE status IN ('todo', 'doing') AND task_name = 'send_prescription')"
)


async def issued_count(runtime: Runtime, ids: list[uuid.UUID]) -> int:
    async with runtime.engine.connect() as connection:
        return int(await connection.scalar(ISSUED_AMONG, {"ids": ids}) or 0)


async def read_counts(worker: ManagedProcess, path: Path) -> dict[str, int]:
    """The worker's SQL counts so far (it writes them on SIGUSR1)."""
    path.unlink(missing_ok=True)
    worker.process.send_signal(signal.SIGUSR1)

    async def written() -> bool:
        return path.exists()

    await wait_until(written, "the SQL counts", timeout=10)
    await asyncio.sleep(0.1)  # written in one call; let it finish
    counts: dict[str, int] = json.loads(path.read_text())
    return counts


@dataclass
class Round:
    """One round: a batch through the worker, then as many raw calls right after."""

    sends: int
    worker_seconds: float
    job_seconds: float
    worker_cpu: tuple[float, float]  # the worker process's user and system seconds
    sending_cpu: machine_cpu.CpuSplit
    raw_seconds: float
    raw_cpu: machine_cpu.CpuSplit

    @property
    def ratio(self) -> float:
        return self.raw_seconds / self.worker_seconds


async def main(
    sends: int,
    warmup: int,
    profile: Path | None,
    callgrind: bool,
    concurrency: int | None,
    rounds: int,
) -> None:
    configure_logging("WARNING", json=False)
    if callgrind or profile is not None:
        rounds = 1  # the rates mean nothing under a profiler: one window to count
    folder = Path(tempfile.mkdtemp(prefix="rxroute-bench-send-"))
    url, admin = fresh_database(folder)
    config = load_config(None).with_overrides(sign_delay_seconds=0.0)
    sandbox, sandbox_url = start_sandbox(config, folder)
    worker_env = rxroute_env(url, sandbox_url)
    worker_env["RXROUTE_SQL_COUNT_FILE"] = str(folder / COUNT_FILE)
    measured: list[Round] = []
    try:
        await wait_for_http(sandbox, f"{sandbox_url}/_sandbox/stats", "the sandbox")
        await asyncio.to_thread(migrate.upgrade, url)
        settings = Settings(  # type: ignore[call-arg]
            database_url=url,
            erx_base_url=sandbox_url,
            erx_clinic_id=994,
            log_level="WARNING",
            patient_notifications=False,
            _env_file=None,
        )
        if concurrency is None:
            concurrency = settings.worker_concurrency
        worker_env["RXROUTE_WORKER_CONCURRENCY"] = str(concurrency)
        runtime = await start_runtime(settings, url)
        try:
            print(f"seeding, then queueing {rounds} x {sends} Region B sends ...", flush=True)
            await seed(runtime, rounds * sends + warmup)
            bulk = await bulk_region_b(runtime)
            warm_ids = bulk[:warmup]
            batches = [bulk[warmup + r * sends : warmup + (r + 1) * sends] for r in range(rounds)]
            # One worker at its default concurrency; SQL counted inside it.
            callgrind_out = folder / "callgrind.out"
            if callgrind:
                prefix = [
                    *under_callgrind(callgrind_out, counting_from_start=False),
                    sys.executable,
                ]
                worker = wrapped_worker(prefix, worker_env, folder)
            elif profile is not None:
                # cProfile timed by CPU time (PROFILE_WORKER), written when the worker exits.
                prefix = [sys.executable, "-c", PROFILE_WORKER, str(profile.resolve())]
                worker = wrapped_worker(prefix, worker_env, folder)
            else:
                worker = spawn(["worker"], worker_env, folder, "worker")

            async def listening() -> bool:
                assert worker.alive(), f"the worker exited at start-up:\n{worker.log()}"
                return bool(await scalar(runtime, "SELECT count(*) FROM procrastinate_workers"))

            await wait_until(listening, "the worker to register", timeout=60)

            async def all_issued(batch: list[uuid.UUID]) -> bool:
                assert worker.alive(), f"the worker exited:\n{worker.log()}"
                if await scalar(runtime, SENDS_OUTSTANDING):
                    return False
                return await issued_count(runtime, batch) >= len(batch)

            # A warm-up batch first: the worker's first jobs import modules and fill caches.
            await queue_sends(runtime, warm_ids)
            await wait_until(
                lambda: all_issued(warm_ids), "the warm-up sends to be issued", timeout=120
            )
            warm_counts = await read_counts(worker, folder / COUNT_FILE)
            # The worker's token grants and logins, summed over its windows (the raw client
            # takes a token and a login of its own each round).
            grants = logins = 0
            issued_times: dict[str, int] = {}
            for ids in batches:
                before = await sandbox_stats(sandbox_url)
                if callgrind:
                    await asyncio.to_thread(instrument, worker, True)
                await queue_sends(runtime, ids)
                # From the commit that queues them (the worker starts on its notification):
                # the queueing itself, this script's and PostgreSQL's work, is not the
                # worker's.
                sending_pids = {
                    "worker": worker.pid,
                    "sandbox": sandbox.pid,
                    "this script": os.getpid(),
                }
                machine_before = machine_cpu.snapshot(sending_pids)
                cpu_before = process_cpu(worker.pid)
                await wait_until(
                    lambda ids=ids: all_issued(ids),  # type: ignore[misc]
                    "every send to be issued",
                    timeout=max(120, sends),
                )
                if callgrind:
                    await asyncio.to_thread(instrument, worker, False)
                cpu_after = process_cpu(worker.pid)
                sending_cpu = machine_cpu.split(machine_before, machine_cpu.snapshot(sending_pids))
                after = await sandbox_stats(sandbox_url)
                grants += after["token_grants"] - before["token_grants"]
                logins += after["prescriber_logins"] - before["prescriber_logins"]
                issued_times.update(after["issued_by_client_ref_id"])
                worker_seconds, job_seconds = await worker_window(runtime, ids)
                # The raw calls right after, the worker idle: each round's ratio compares
                # two windows a few seconds apart, whatever the host does over minutes.
                raw_pids = {"raw client": os.getpid(), "sandbox": sandbox.pid}
                raw_before = machine_cpu.snapshot(raw_pids)
                raw_seconds = await raw_issue.baseline(sandbox_url, len(ids), concurrency)
                raw_cpu = machine_cpu.split(raw_before, machine_cpu.snapshot(raw_pids))
                measured.append(
                    Round(
                        sends=len(ids),
                        worker_seconds=worker_seconds,
                        job_seconds=job_seconds,
                        worker_cpu=(cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]),
                        sending_cpu=sending_cpu,
                        raw_seconds=raw_seconds,
                        raw_cpu=raw_cpu,
                    )
                )
            all_ids = [i for batch in batches for i in batch]
            issued = await issued_count(runtime, all_ids)
            await asyncio.to_thread(stop, [worker])
            worker_instructions = instructions(callgrind_out) if callgrind else None
            final = json.loads((folder / COUNT_FILE).read_text())
            counts = {key: final[key] - warm_counts[key] for key in final}
        finally:
            await stop_runtime()
        raw_per_call = (
            await asyncio.to_thread(
                raw_instructions_per_call, sandbox_url, sends, concurrency, folder
            )
            if callgrind
            else None
        )
    finally:
        await asyncio.to_thread(stop, [sandbox])
        drop_database(url, admin)

    total = rounds * sends
    per_thousand = 1000 / total
    duplicates = sum(1 for ref in map(str, all_ids) if issued_times.get(ref, 0) > 1)
    print(
        f"sends:                          {rounds} x {sends} (one worker process, "
        f"concurrency {concurrency}; each round's raw calls right after it)"
    )
    print(f"issued:                         {issued} ({duplicates} issued more than once)")
    for number, each in enumerate(measured, start=1):
        user, system = each.worker_cpu
        print(f"round {number}:")
        print(
            f"  through the worker:           {each.sends / each.worker_seconds:8.1f} sends/s "
            f"({each.worker_seconds:.2f} s); worker CPU per send "
            f"{(user + system) / each.sends * 1000:.2f} ms (user {user / each.sends * 1000:.2f}, "
            f"system {system / each.sends * 1000:.2f}); mean time inside one job "
            f"{each.job_seconds * 1000:.1f} ms"
        )
        print(f"    {each.sending_cpu.describe(each.sends, 'send')}")
        print(f"    {each.sending_cpu.describe_share('worker')}")
        print(
            f"  baseline, raw httpx issue:    {each.sends / each.raw_seconds:8.1f} sends/s "
            f"({each.raw_seconds:.2f} s)"
        )
        print(f"    {each.raw_cpu.describe(each.sends, 'call')}")
        print(f"  worker / baseline:            {each.ratio:8.2f}")
    ratios = sorted(each.ratio for each in measured)
    print(
        f"worker / baseline, median:      {statistics.median(ratios):8.2f} "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.25)"
    )
    if worker_instructions is not None and raw_per_call is not None:
        per_send = worker_instructions / total
        print(
            f"instructions per send / call:   worker {per_send / 1e6:.2f} million, raw client "
            f"{raw_per_call / 1e6:.2f} million; raw / worker {raw_per_call / per_send:.2f} "
            "(callgrind; the worker's rate above is not meaningful under it)"
        )
    print(
        f"SQL round trips per send:       {counts['round_trips'] / total:8.2f} "
        f"(of which pings {counts['pings'] / total:.2f}, BEGIN {counts['begins'] / total:.2f}, "
        f"COMMIT {counts['commits'] / total:.2f}; target <= 6)"
    )
    print(
        f"transactions per send:          {counts['transactions'] / total:8.2f} "
        f"({counts['autocommit_statements'] / total:.2f} single-statement; target <= 3)"
    )
    print(
        f"token grants per 1,000 sends:   {grants * per_thousand:8.1f} ({grants} in total; "
        "target <= 2)"
    )
    print(
        f"prescriber logins per 1,000:    {logins * per_thousand:8.1f} ({logins} in total; "
        "target <= 2 per prescriber)"
    )
    if issued != total or duplicates:
        raise SystemExit("not every prescription was issued exactly once")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sends", type=int, default=500, help="sends per round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds, each a batch through the worker then the raw calls; the median "
        "ratio is the result (one round under --profile or --callgrind)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="the worker's concurrency and the raw client's (default: the worker's default)",
    )
    parser.add_argument("--warmup", type=int, default=50, help="sends before the measured ones")
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile the worker into this file"
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="run the worker under callgrind and print its instructions per send "
        "(repeatable, unlike CPU time; the rates are then meaningless)",
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.sends,
            arguments.warmup,
            arguments.profile,
            arguments.callgrind,
            arguments.concurrency,
            arguments.rounds,
        )
    )
