"""The sweep as deployed: a real ``rxroute worker`` runs the periodic ``reconcile_erx`` job
(every minute, ``RXROUTE_RECONCILE_*`` at their defaults unless ``--worker-env`` says
otherwise) until every seeded prescription has been polled once (bench_reconcile.py
``--sweep worker``).

Progress is read from the database every few seconds (the seeded prescriptions' stamp of
when they were last heard from); the worker's and the sandbox's CPU from /proc; the load
average is printed with every progress line, since the machine is shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from bench_load import process_cpu

RXROUTE = Path(sys.executable).with_name("rxroute")

#: The seeded ones were created well before the run; ones sent for the comparison just now.
PROGRESS = (
    "SELECT count(*), count(*) FILTER (WHERE last_provider_update_at >= %(t0)s), "
    "count(*) FILTER (WHERE reconcile_failures > 0) FROM prescriptions "
    "WHERE provider_prescription_id IS NOT NULL AND created_at < %(before)s"
)


@dataclass
class WorkerSweep:
    seeded: int
    #: Seconds from the worker's start: first poll stamped, every one stamped.
    first_poll: float | None = None
    all_polled: float | None = None
    worker_cpu: float = 0.0
    sandbox_cpu: float = 0.0
    loads: list[tuple[float, float, float]] = field(default_factory=list)
    failed_polls: int = 0

    def describe(self) -> str:
        if self.all_polled is None or self.first_poll is None:
            return f"not every prescription was polled (seeded {self.seeded})"
        polling = self.all_polled - self.first_poll
        rate = self.seeded / polling
        lo = min(load[0] for load in self.loads)
        hi = max(load[0] for load in self.loads)
        return (
            f"{self.seeded} polled once in {self.all_polled / 60:.1f} min from the worker's "
            f"start ({'within' if self.all_polled <= 900 else 'NOT within'} 15 min); first "
            f"poll after {self.first_poll:.0f} s, then {polling / 60:.1f} min at "
            f"{rate:.1f} polls/s; CPU per poll: worker {self.worker_cpu * 1000 / self.seeded:.2f}"
            f" ms, sandbox {self.sandbox_cpu * 1000 / self.seeded:.2f} ms; failed polls "
            f"(backed off, polled again later): {self.failed_polls}; 1-min load {lo:.2f} to "
            f"{hi:.2f}"
        )


def worker_env(url: str, sandbox_url: str, extra: list[str]) -> dict[str, str]:
    """The deployed defaults, plus the bench's database and sandbox (no ``.env`` is read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env.update(
        RXROUTE_DATABASE_URL=url,
        RXROUTE_ERX_BASE_URL=sandbox_url,
        RXROUTE_ERX_CLINIC_ID="994",
        RXROUTE_LOG_LEVEL="WARNING",
        RXROUTE_LOG_JSON="true",
        # The few prescriptions sent for the comparison queued patient emails, with no
        # mail relay to take them; their retries are not what is measured.
        RXROUTE_PATIENT_NOTIFICATIONS="false",
    )
    for item in extra:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def run_worker_sweep(
    url: str,
    sandbox_url: str,
    sandbox_pid: int,
    seeded_before: datetime,
    extra_env: list[str],
    var_dir: Path,
    timeout_minutes: float = 40.0,
) -> WorkerSweep:
    """Start one worker, wait until every seeded prescription is polled, stop it."""
    log_path = var_dir / "worker.log"
    started_at = datetime.now(UTC)
    params = {"t0": started_at, "before": seeded_before}
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(PROGRESS, params).fetchone()
        assert row is not None
        result = WorkerSweep(seeded=row[0])
        sandbox_cpu = sum(process_cpu(sandbox_pid))
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [str(RXROUTE), "worker"],
                env=worker_env(url, sandbox_url, extra_env),
                cwd=var_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started = time.monotonic()
        deadline = started + timeout_minutes * 60
        last_print = 0.0
        try:
            while time.monotonic() < deadline:
                time.sleep(5)
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited ({worker.returncode}); see {log_path}")
                row = conn.execute(PROGRESS, params).fetchone()
                assert row is not None
                _, polled, failing = row
                elapsed = time.monotonic() - started
                load = os.getloadavg()
                result.loads.append(load)
                if polled and result.first_poll is None:
                    result.first_poll = elapsed
                if elapsed - last_print >= 60 or polled >= result.seeded:
                    last_print = elapsed
                    print(
                        f"  {elapsed / 60:5.1f} min: {polled} polled, {failing} backing off; "
                        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
                        flush=True,
                    )
                if polled >= result.seeded:
                    result.all_polled = elapsed
                    break
            result.worker_cpu = sum(process_cpu(worker.pid))
            result.sandbox_cpu = sum(process_cpu(sandbox_pid)) - sandbox_cpu
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    result.failed_polls = log_path.read_text(errors="replace").count("reconcile_failed")
    return result


def as_if_heard_an_hour_earlier(url: str) -> None:
    """Before another sweep of the same prescriptions: each last heard from an hour before
    the sweep that just ended polled it (the steady state: polled before, quiet since), then
    VACUUM ANALYZE, so each sweep starts from tidy tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE prescriptions SET last_provider_update_at = "
            "last_provider_update_at - interval '1 hour' "
            "WHERE last_provider_update_at IS NOT NULL"
        )
        conn.execute("VACUUM ANALYZE prescriptions, deliveries")


def issued_window(now: datetime) -> tuple[datetime, datetime]:
    """Seeded prescriptions were issued 75 to 20 minutes ago: all quiet past the default
    15 minutes when the worker starts, oldest first in the reconciler's order."""
    return now - timedelta(minutes=75), now - timedelta(minutes=20)
