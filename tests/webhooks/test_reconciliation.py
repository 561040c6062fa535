"""Reconciliation: what the webhooks never said, the platform is asked about.

The sandbox here has no webhook URL, so every status change after issue is lost; only
``reconcile_once`` can bring it in, with source ``poll``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, text, update

from rxroute.deliveries.sending import RetryScheduler, send
from rxroute.models import Prescription
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.prescriptions.tasks import defer_send, send_lock
from rxroute.runtime import Runtime
from rxroute.webhooks.tasks import reconcile_erx, reconcile_once
from tests.webhooks.helpers import new_prescription, queued_region_b, status_and_history


async def _issue(runtime: Runtime, count: int) -> dict[uuid.UUID, str]:
    """``count`` prescriptions issued on the sandbox through the real send job."""
    ids = await queued_region_b(runtime, count)
    for pid in ids:
        outcome = await send(runtime, pid, schedule_retry=RetryScheduler())
        assert outcome.result == "issued", outcome
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(Prescription.id, Prescription.provider_prescription_id).where(
                    Prescription.id.in_(ids)
                )
            )
        ).all()
    return {pid: provider_id for pid, provider_id in rows if provider_id}


async def _remote_status(platform: httpx.AsyncClient, provider_id: str) -> str:
    body = (await platform.get(f"/_sandbox/prescriptions/{provider_id}")).json()
    status: str = body["data"]["prescription"]["status"]
    return status


async def _wait_signed(platform: httpx.AsyncClient, provider_ids: list[str]) -> None:
    for _ in range(200):
        statuses = [await _remote_status(platform, p) for p in provider_ids]
        if all(s == "signed" for s in statuses):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not signed on the platform: {statuses}")


def _after_quiet_time(runtime: Runtime, extra: int = 1) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=runtime.settings.reconcile_after_seconds + extra)


async def test_lost_webhooks_are_recovered_by_polling(
    db: Runtime, platform: httpx.AsyncClient
) -> None:
    issued = await _issue(db, 4)
    pids = list(issued)
    await _wait_signed(platform, list(issued.values()))
    actions = {pids[0]: ["print", "dispense"], pids[1]: ["expire"], pids[2]: ["void"]}
    for pid, steps in actions.items():
        for action in steps:
            answer = await platform.post(f"/_sandbox/prescriptions/{issued[pid]}/{action}")
            assert answer.json()["success"] is True
    # No webhook reached rxroute: everything still says issued.
    for pid in pids:
        assert (await status_and_history(db, pid))[0] == "issued"

    counts = await reconcile_once(now=_after_quiet_time(db))
    assert counts == {"polled": 4, "changed": 4, "errors": 0, "requeued": 0}
    expected = {pids[0]: "dispensed", pids[1]: "expired", pids[2]: "voided", pids[3]: "signed"}
    for pid, final in expected.items():
        assert await _remote_status(platform, issued[pid]) == final
        status, history = await status_and_history(db, pid)
        assert status == final
        polled = [e for e in history if e.source == Source.POLL.value]
        assert [(e.status, e.provider_status) for e in polled] == [(final, final)]
        assert [e.status for e in history] == ["queued", "sending", "issued", final]

    # Again: finals are no longer asked about; the signed one is, and nothing repeats.
    again = await reconcile_once(now=_after_quiet_time(db, 2 * db.settings.reconcile_after_seconds))
    assert again == {"polled": 1, "changed": 0, "errors": 0, "requeued": 0}
    status, history = await status_and_history(db, pids[3])
    assert [e.status for e in history].count("signed") == 1


async def test_recently_heard_prescriptions_are_not_polled(
    db: Runtime, platform: httpx.AsyncClient
) -> None:
    issued = await _issue(db, 2)
    quiet, recent = list(issued)
    await _wait_signed(platform, list(issued.values()))
    for pid in issued:
        await platform.post(f"/_sandbox/prescriptions/{issued[pid]}/dispense")
    # Just issued: nothing has been quiet long enough.
    assert (await reconcile_once())["polled"] == 0
    almost = datetime.now(UTC) + timedelta(seconds=db.settings.reconcile_after_seconds - 60)
    assert (await reconcile_once(now=almost))["polled"] == 0
    # One of them heard from the platform long ago, the other just now.
    long_ago = datetime.now(UTC) - timedelta(seconds=db.settings.reconcile_after_seconds + 60)
    async with db.sessionmaker() as session, session.begin():
        await session.execute(
            update(Prescription)
            .where(Prescription.id == quiet)
            .values(last_provider_update_at=long_ago)
        )
    counts = await reconcile_once()
    assert counts["polled"] == 1 and counts["changed"] == 1
    assert (await status_and_history(db, quiet))[0] == "dispensed"
    assert (await status_and_history(db, recent))[0] == "issued"


async def test_only_open_region_b_prescriptions_with_a_platform_id_are_polled(
    db: Runtime, platform: httpx.AsyncClient
) -> None:
    issued = await _issue(db, 1)
    (open_one,) = issued
    done = await new_prescription(db)  # an id the platform never heard of: asking would fail
    email = await new_prescription(db, up_to=Status.SENDING)
    async with db.sessionmaker() as session, session.begin():
        await session.execute(
            update(Prescription).where(Prescription.id == done).values(status="dispensed")
        )
        await session.execute(
            update(Prescription)
            .where(Prescription.id == email)
            .values(channel="email", status="emailed")
        )
    counts = await reconcile_once(now=_after_quiet_time(db))
    assert counts["polled"] == 1
    assert counts["errors"] == 0
    assert (await status_and_history(db, open_one))[0] == "signed"


async def test_a_platform_error_is_counted_and_changes_nothing(
    db: Runtime, platform: httpx.AsyncClient
) -> None:
    ghost = await new_prescription(db, provider_id="SRXNOTONPLATFORM")
    counts = await reconcile_once(now=_after_quiet_time(db))
    assert counts["errors"] == 1 and counts["polled"] == 0
    status, history = await status_and_history(db, ghost)
    assert status == "issued"
    assert [e.source for e in history].count("poll") == 0


async def _job_locks(runtime: Runtime) -> list[str]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT lock FROM procrastinate_jobs WHERE task_name = 'send_prescription' "
                "AND status = 'todo' ORDER BY id"
            )
        )
        return [row[0] for row in rows]


async def test_orphaned_sends_are_requeued(db: Runtime) -> None:
    orphan_queued = await new_prescription(db, up_to=Status.QUEUED)
    orphan_sending = await new_prescription(db, up_to=Status.SENDING)
    has_job = await new_prescription(db, up_to=Status.QUEUED)
    fresh = await new_prescription(db, up_to=Status.QUEUED)
    issued = await new_prescription(db)
    old = datetime.now(UTC) - timedelta(minutes=30)
    async with db.sessionmaker() as session, session.begin():
        await session.execute(
            update(Prescription)
            .where(Prescription.id.in_([orphan_queued, orphan_sending, has_job, issued]))
            .values(updated_at=old)
        )
        await defer_send(session, has_job)
    assert await _job_locks(db) == [send_lock(has_job)]

    counts = await reconcile_once()
    assert counts["requeued"] == 2
    locks = await _job_locks(db)
    assert sorted(locks) == sorted(
        [send_lock(has_job), send_lock(orphan_queued), send_lock(orphan_sending)]
    )
    assert send_lock(fresh) not in locks
    # A second pass finds their jobs and requeues nothing more.
    assert (await reconcile_once())["requeued"] == 0


async def test_the_periodic_task_runs_a_pass(db: Runtime) -> None:
    counts = await reconcile_erx(timestamp=0)
    assert counts == {"polled": 0, "changed": 0, "errors": 0, "requeued": 0}
