"""In order per prescription with real ``rxroute worker`` processes, one SIGKILLed mid-run.

Two worker processes (concurrency 4 each) deliver 3 events for each of 30 prescriptions to
a real receiver that answers 503 to a share of the requests, while the events are still
being written. One worker is SIGKILLed partway; its jobs run again on the other once its
heartbeat is stale. Every event arrives, and each prescription's events arrive in the order
they happened (a repeat of one delivered just before the kill is allowed: delivery is at
least once, and receivers drop repeats by webhook-id).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from rxroute.events.receiver import EventReceiver
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime
from tests.events.conftest import add_endpoint, deliveries, queued_prescription
from tests.factories import observe_current

pytestmark = pytest.mark.slow

RXROUTE = str(Path(sys.executable).parent / "rxroute")
PRESCRIPTIONS = 30
JOURNEY = ["prescription.queued", "prescription.sent", "prescription.signed"]
WORKER_SETTINGS = {
    "RXROUTE_EVENTS_RETRY_SECONDS": "0.05",
    "RXROUTE_WORKER_HEARTBEAT_SECONDS": "1",
    "RXROUTE_STALLED_JOB_SECONDS": "6",
    "RXROUTE_PLATFORM_CALL_DEADLINE_SECONDS": "1",
    "RXROUTE_LOG_LEVEL": "WARNING",
}


def _start_worker(database_url: str, folder: Path, n: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env.update(WORKER_SETTINGS)
    env["RXROUTE_DATABASE_URL"] = database_url
    with (folder / f"worker-{n}.log").open("wb") as log:
        return subprocess.Popen(
            [RXROUTE, "worker", "--concurrency", "4"],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_order_holds_across_worker_processes_and_a_kill(
    fast_retries: Runtime,
    receiver: EventReceiver,
    secret: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    runtime = fast_retries
    async with runtime.engine.begin() as connection:
        await connection.execute(text("DELETE FROM procrastinate_workers"))
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
    workers = [_start_worker(database_url, tmp_path, n) for n in range(2)]
    try:
        receiver.fail_next(15)
        async with runtime.sessionmaker() as session, session.begin():
            pids = [await queued_prescription(session, runtime) for _ in range(PRESCRIPTIONS)]
        for step in (Status.ISSUED, Status.SIGNED):
            for n, pid in enumerate(pids):
                async with runtime.sessionmaker() as session, session.begin():
                    await observe_current(session, pid, step, ref=f"SRX{n:03d}{pid.hex[:8]}")
                if step is Status.SIGNED and n == PRESCRIPTIONS // 2:
                    receiver.fail_next(15)
                    workers[0].send_signal(signal.SIGKILL)
                    workers[0].wait(timeout=10)
        deadline = time.monotonic() + 60
        while not all(d.state == "delivered" for d in await deliveries(runtime)):
            assert time.monotonic() < deadline, "events not all delivered within 60 s"
            assert workers[1].poll() is None, (tmp_path / "worker-1.log").read_text()
            await asyncio.sleep(0.2)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                await asyncio.to_thread(worker.wait, 20)
            except subprocess.TimeoutExpired:
                worker.kill()
    received = receiver.events()  # first receipt of each webhook-id, in arrival order
    by_prescription: dict[str, list[str]] = {str(pid): [] for pid in pids}
    for event in received:
        by_prescription[event.data["prescription_id"]].append(event.type)
    assert by_prescription == {str(pid): JOURNEY for pid in pids}
    assert receiver.refused == 0
    print(
        f"{len(received)} events in order; {receiver.repeats} repeat(s) after the kill; "
        f"{sum(d.attempts for d in await deliveries(runtime))} attempts"
    )
