"""Exactly one platform copy per prescription, proven with real ``rxroute worker`` processes.

Each test starts real worker processes (the installed ``rxroute worker`` command, with the
test database and the sandbox's URL in their environment) against a real
:class:`~rxroute.sandbox.SandboxServer` on a free 127.0.0.1 port, defers real jobs, and
counts what the platform holds (``/_sandbox/stats`` ``issued_by_client_ref_id``):

* duplicate send jobs for every prescription, run by two worker processes at once;
* a worker SIGKILLed while its issue is in flight on the platform (the sandbox holds the
  request), its jobs retried as stalled by another worker once the dead one's heartbeat is
  stale - the retry must look up and adopt, never issue again;
* the 1,000-send exactly-once test, through two worker processes at concurrency 4 with
  10% 5xx, 10% answers lost after processing and 30-second tokens.

Test-sized stall detection (heartbeat 1 s, stalled after 8 s, platform call deadline 3 s,
which the settings' own validation accepts) keeps the stalled-job test short.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from rxroute.models import DeliveryAttempt, Pharmacy, Prescription
from rxroute.prescriptions.history import history
from rxroute.prescriptions.lifecycle import Source
from rxroute.prescriptions.tasks import defer_send
from rxroute.runtime import Runtime
from rxroute.sandbox import SandboxServer
from rxroute.seed.service import add_prescriptions, seed_demo
from tests.erx_sandbox import sandbox_config
from tests.factories import queue_delivery
from tests.processes import (
    HEARTBEAT_SECONDS,
    STALLED_SECONDS,
    Workers,
    sandbox_stats,
    wait_until,
)
from tests.processes import scalar as _scalar

pytestmark = pytest.mark.slow

# --- data and checks ------------------------------------------------------------------------------


async def _queued_region_b(runtime: Runtime, count: int, *, jobs_each: int) -> list[uuid.UUID]:
    """``count`` demo Region B prescriptions queued, each with ``jobs_each`` send jobs."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_demo(session, runtime.secret_box)
        await add_prescriptions(session, count * 2 + 10)
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
        assert len(ids) == count
        for index, pid in enumerate(ids):
            await session.execute(
                update(Prescription)
                .where(Prescription.id == pid)
                .values(channel="erx", pharmacy_id=pharmacies[index % len(pharmacies)])
            )
            await queue_delivery(session, pid, source=Source.PATIENT)
            for _ in range(jobs_each):
                # The real helper, the real per-prescription lock: what every caller defers.
                await defer_send(session, pid)
    return ids


async def _statuses(runtime: Runtime, ids: list[uuid.UUID]) -> Counter[str]:
    async with runtime.sessionmaker() as session:
        rows = await session.scalars(select(Prescription.status).where(Prescription.id.in_(ids)))
        return Counter(rows)


async def _send_jobs_left(runtime: Runtime) -> int:
    return int(
        await _scalar(
            runtime,
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'send_prescription' "
            "AND status IN ('todo', 'doing')",
        )
    )


async def _until_all_sent(runtime: Runtime, ids: list[uuid.UUID], timeout: float) -> None:
    async def done() -> bool:
        statuses = await _statuses(runtime, ids)
        sent = statuses["issued"] + statuses["signed"]
        return sent == len(ids) and await _send_jobs_left(runtime) == 0

    await wait_until(done, f"{len(ids)} prescriptions issued and no send job left", timeout)


async def _stats(sandbox: SandboxServer) -> dict[str, Any]:
    return await sandbox_stats(sandbox.url)


async def _control(sandbox: SandboxServer, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=30, trust_env=False) as http:
        response = await http.request(method, path, **kwargs)
    response.raise_for_status()
    return response.json()


async def _recorded_twice(runtime: Runtime, ids: list[uuid.UUID]) -> list[Any]:
    """Prescriptions whose history has a far-side status twice, or more than one delivery."""
    async with runtime.engine.connect() as connection:
        twice = await connection.execute(
            text(
                "SELECT prescription_id, status FROM prescription_status_events "
                "WHERE prescription_id = ANY(:ids) AND status IN ('issued', 'signed') "
                "GROUP BY prescription_id, status HAVING count(*) > 1 "
                "UNION ALL SELECT prescription_id, 'deliveries' FROM deliveries "
                "WHERE prescription_id = ANY(:ids) GROUP BY prescription_id HAVING count(*) > 1"
            ),
            {"ids": ids},
        )
        return list(twice)


def _exactly_once(stats: dict[str, Any], ids: list[uuid.UUID]) -> None:
    by_ref: dict[str, int] = stats["issued_by_client_ref_id"]
    assert set(by_ref) == {str(pid) for pid in ids}
    twice = {ref: n for ref, n in by_ref.items() if n != 1}
    assert not twice, f"issued more than once: {twice}"
    assert stats["prescriptions_issued"] == len(ids)


@pytest.fixture
def sandbox_server() -> Iterator[Callable[..., SandboxServer]]:
    """A factory: ``sandbox_server(**faults)`` builds a sandbox to enter with ``async with``."""

    def build(**faults: Any) -> SandboxServer:
        return SandboxServer(sandbox_config(**faults), host="127.0.0.1", port=0)

    yield build


# --- (a) duplicate send jobs on two workers -----------------------------------------------------


async def test_duplicate_send_jobs_on_two_workers_issue_each_prescription_once(
    db: Runtime, workers: Workers, sandbox_server: Callable[..., SandboxServer]
) -> None:
    """Three send jobs per prescription, two worker processes at concurrency 4: one copy each.

    The platform is slowed (150 ms on every call) so jobs for different prescriptions really
    run side by side in both processes while the duplicates queue behind each other.
    """
    count, jobs_each = 40, 3
    ids = await _queued_region_b(db, count, jobs_each=jobs_each)
    async with sandbox_server(latency_ms=150) as sandbox:
        workers.sandbox_url = sandbox.url
        started = time.monotonic()
        await workers.start(2, concurrency=4)
        await _until_all_sent(db, ids, timeout=90)
        elapsed = time.monotonic() - started
        stats = await _stats(sandbox)

    _exactly_once(stats, ids)
    runs = int(
        await _scalar(
            db,
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'send_prescription' "
            "AND status = 'succeeded'",
        )
    )
    assert runs == count * jobs_each, runs
    ran_on = await _scalar(
        db,
        "SELECT count(DISTINCT worker_id) FROM procrastinate_jobs "
        "WHERE task_name = 'send_prescription'",
    )
    assert ran_on == 2, "both worker processes ran send jobs"
    async with db.sessionmaker() as session:
        for pid in ids:
            attempts = await session.scalars(
                select(DeliveryAttempt.action).where(DeliveryAttempt.prescription_id == pid)
            )
            # One issue; the duplicate jobs found the delivery live and did nothing.
            assert list(attempts) == ["issue"], pid
    assert await _recorded_twice(db, ids) == []
    assert workers.tracebacks() == []
    print(
        f"{count} prescriptions x {jobs_each} send jobs on 2 workers: {runs} runs, "
        f"{stats['prescriptions_issued']} platform copies, {elapsed:.1f} s; "
        f"jobs ran on {ran_on} worker ids"
    )


# --- (b) a stalled-job retry while the issue is in flight ---------------------------------------


async def test_stalled_job_retry_during_an_in_flight_issue_adopts_the_copy(
    db: Runtime, workers: Workers, sandbox_server: Callable[..., SandboxServer]
) -> None:
    """SIGKILL the worker while the platform holds its issue requests; another worker's
    stalled-job retry then runs the jobs again: each looks up and adopts, none issues again.

    The sandbox holds every issue for 2.5 s (below the 3 s platform-call deadline) and
    completes it after the caller died, as a real platform does with a request it received.
    A retry attempted while the issues are in flight retries nothing: the dead worker's
    heartbeat is not stale yet (stalled after 8 s > deadline + 5 s margin).
    """
    count = 3
    ids = await _queued_region_b(db, count, jobs_each=1)
    async with sandbox_server() as sandbox:
        workers.sandbox_url = sandbox.url
        await _control(
            sandbox,
            "POST",
            "/_sandbox/faults/next",
            json={"operation": "issue", "fault": "latency", "count": count, "latency_ms": 2500},
        )
        (victim,) = await workers.start(1, concurrency=4)

        async def issues_in_flight() -> bool:
            fired = (await _stats(sandbox)).get("aimed_faults_fired_by_operation", {})
            return int(fired.get("issue", {}).get("latency", 0)) == count

        await wait_until(issues_in_flight, "every issue to reach the platform", timeout=30)
        workers.kill(victim)
        killed_at = time.monotonic()
        assert (await _stats(sandbox))["prescriptions_issued"] == 0, "the issues are held"

        # A retry now, while the platform still holds the issues, must leave the jobs alone.
        from rxroute.jobs import queue

        in_flight = await queue.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=STALLED_SECONDS
        )
        assert list(in_flight) == []

        await workers.start(1, concurrency=4)

        async def landed() -> bool:
            return int((await _stats(sandbox))["prescriptions_issued"]) == count

        await wait_until(landed, "the held issues to land", timeout=10)
        await _until_all_sent(db, ids, timeout=STALLED_SECONDS + 30)
        recovered = time.monotonic() - killed_at
        stats = await _stats(sandbox)

    _exactly_once(stats, ids)
    statuses = await _statuses(db, ids)
    assert set(statuses) <= {"issued", "signed"}, statuses
    async with db.sessionmaker() as session:
        for pid in ids:
            attempts = list(
                await session.scalars(
                    select(DeliveryAttempt)
                    .where(DeliveryAttempt.prescription_id == pid)
                    .order_by(DeliveryAttempt.started_at)
                )
            )
            # The killed run recorded nothing after its claim; the retry looked up and found.
            assert [(a.action, a.outcome) for a in attempts] == [("lookup", "found")], pid
            events = [e.status for e in await history(session, pid)]
            assert events[:3] == ["queued", "sending", "issued"], events
            assert Counter(events)["issued"] == 1
    # Not retried before the dead worker's heartbeat went stale, and not long after.
    assert recovered >= STALLED_SECONDS - HEARTBEAT_SECONDS - 1, recovered
    assert recovered < STALLED_SECONDS + 15, recovered
    assert workers.tracebacks() == []
    print(
        f"{count} issues held in flight, worker SIGKILLed; adopted by the stalled-job retry "
        f"after {recovered:.1f} s; platform copies: {stats['prescriptions_issued']}"
    )


# --- (c) the 1,000-send exactly-once test, through real workers ----------------------------------

SENDS = 1000


async def test_exactly_once_across_1000_sends_through_two_workers_with_faults(
    db: Runtime, workers: Workers, sandbox_server: Callable[..., SandboxServer]
) -> None:
    """10% 5xx, 10% processed-then-dropped, 30 s tokens; 2 worker processes x concurrency 4."""
    ids = await _queued_region_b(db, SENDS, jobs_each=1)
    faults = {
        "error_rate": 0.1,
        "drop_after_processing_rate": 0.1,
        "access_token_ttl_seconds": 30,
        "session_token_ttl_seconds": 30,
    }
    async with sandbox_server(**faults) as sandbox:
        workers.sandbox_url = sandbox.url
        started = time.monotonic()
        await workers.start(2, concurrency=4)
        await _until_all_sent(db, ids, timeout=240)
        elapsed = time.monotonic() - started
        stats = await _stats(sandbox)

    # The faults really happened, and some issues landed without an answer and were found.
    assert stats["injected_errors"] > 0 and stats["injected_drops"] > 0, stats
    _exactly_once(stats, ids)
    statuses = await _statuses(db, ids)
    assert set(statuses) <= {"issued", "signed"}, statuses
    assert sum(statuses.values()) == SENDS
    found = int(
        await _scalar(
            db,
            "SELECT count(*) FROM delivery_attempts WHERE action = 'lookup' AND outcome = 'found'",
        )
    )
    assert found > 0
    assert await _recorded_twice(db, ids) == []
    assert workers.tracebacks() == []
    print(
        f"{SENDS} sends through 2 workers x 4: {elapsed:.1f} s, "
        f"{stats['injected_errors']} injected 5xx, {stats['injected_drops']} lost answers, "
        f"{found} copies found by lookup, {stats['prescriptions_issued']} platform copies"
    )
