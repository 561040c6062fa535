"""Order, duplicates, loss and forgery: the issue's "done when", end to end.

* A hypothesis test delivers one prescription's events (and our own send job's ``issued``)
  in every order, with duplicates, through the real receiver and processing, and always
  gets the same final status and the same history.
* The storm: ~50 prescriptions issued through the real client against the sandbox, driven
  to their finals while the sandbox duplicates, reorders and drops webhooks to a real
  rxroute server; forged webhooks mixed in; some events lost for good and recovered by
  reconciliation. Everything is compared with the sandbox's own record.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from rxroute.app import create_app
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings
from rxroute.deliveries import sending
from rxroute.models import InboundWebhookEvent, Prescription
from rxroute.prescriptions.lifecycle import Status, derive_status
from rxroute.runtime import Runtime
from rxroute.sandbox import SandboxServer, load_config
from rxroute.sandbox.config import SandboxConfig
from rxroute.webhooks.signature import sign
from rxroute.webhooks.tasks import reconcile_once
from tests.webhooks.helpers import (
    background_worker,
    encode,
    event_payload,
    new_prescription,
    process_pending,
    queued_region_b,
    record_issued,
    run_jobs,
    served,
    signed_headers,
    status_and_history,
)

T0 = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)

PATHS: list[tuple[str, ...]] = [
    ("signed", "printed", "dispensed"),
    ("signed", "dispensed"),
    ("signed", "expired"),
    ("signed", "printed", "expired"),
    ("signed", "voided"),
    ("signed", "printed", "voided"),
]
JOB_ISSUED = 0  # step 0 is our own send job recording "issued"; steps 1.. are webhooks


# --- one prescription, every order ------------------------------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
async def test_any_delivery_order_gives_the_same_status_and_history(
    client: httpx.AsyncClient, db: Runtime, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(PATHS), label="path")
    steps = len(path) + 1
    order = list(data.draw(st.permutations(range(steps)), label="order"))
    for duplicate in data.draw(st.lists(st.integers(1, len(path)), max_size=4), label="dups"):
        order.insert(data.draw(st.integers(0, len(order)), label="at"), duplicate)
    process_after = data.draw(
        st.lists(st.booleans(), min_size=len(order), max_size=len(order)), label="process"
    )

    pid = await new_prescription(db, up_to=Status.SENDING)
    provider_id = "SRX" + uuid.uuid4().hex[:12].upper()
    events = [
        event_payload(
            status=status,
            provider_id=provider_id,
            client_ref_id=str(pid),
            previous_status=(["issued", *path])[i],
            occurred_at=T0 + timedelta(minutes=i + 1),
        )
        for i, status in enumerate(path)
    ]
    secret = db.settings.webhook_secret.get_secret_value()
    seen: set[int] = set()
    for step, process_now in zip(order, process_after, strict=True):
        if step == JOB_ISSUED:
            async with db.sessionmaker() as session, session.begin():
                await record_issued(session, pid, provider_id)
        else:
            body = encode(events[step - 1])
            response = await client.post(
                "/webhooks/erx", content=body, headers=signed_headers(body, secret)
            )
            assert response.status_code == 200
            assert response.json()["status"] == ("duplicate" if step in seen else "accepted")
            seen.add(step)
        if process_now:
            await process_pending(db)
    await process_pending(db)

    status, history = await status_and_history(db, pid)
    assert status == path[-1]
    assert Counter(e.status for e in history) == Counter(["queued", "sending", "issued", *path]), (
        "each transition exactly once"
    )
    assert status == derive_status(Status(e.status) for e in history).value
    by_status = {e.status: e for e in history}
    for i, status_name in enumerate(path):
        row = by_status[status_name]
        assert (row.source, row.provider_event_id) == ("webhook", events[i]["id"])
        assert row.occurred_at == T0 + timedelta(minutes=i + 1)
    async with db.sessionmaker() as session:
        prescription = await session.get(Prescription, pid)
        assert prescription is not None
        assert prescription.provider_prescription_id == provider_id
        stored = list(
            await session.scalars(
                select(InboundWebhookEvent.state).where(InboundWebhookEvent.prescription_id == pid)
            )
        )
    assert stored == ["processed"] * len(path)


# --- the storm --------------------------------------------------------------------------------

COUNT = 50
LOST = 10  # the last LOST prescriptions reach their finals while no webhook can arrive
FAULTS = {
    "webhook_duplicate_rate": 0.3,
    "webhook_reorder_rate": 0.3,
    "webhook_drop_rate": 0.3,
    "seed": 20240501,
}
# i % 5 picks what the pharmacy / clock / clinic does after signing.
SCRIPTS: list[list[str]] = [
    ["print", "dispense"],
    ["dispense"],
    ["expire"],
    ["void"],
    ["print", "expire"],
]


def storm_config(webhook_url: str, secret: str) -> SandboxConfig:
    config = load_config(None)
    timings = config.timings.model_copy(
        update={
            "sign_delay_seconds": 0.0,
            "webhook_max_attempts": 3,
            "webhook_backoff_seconds": 0.05,
            "webhook_backoff_max_seconds": 0.2,
            "webhook_timeout_seconds": 5.0,
            "reorder_hold_seconds": 0.3,
        }
    )
    faults = config.faults.model_copy(update=FAULTS)
    webhook = config.webhook.model_copy(update={"url": webhook_url, "secret": secret})
    return config.model_copy(update={"timings": timings, "faults": faults, "webhook": webhook})


async def _sandbox_prescriptions(sandbox: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    listed = (await sandbox.get("/_sandbox/prescriptions")).json()["prescriptions"]
    return {p["id"]: p for p in listed}


async def _until(predicate: Any, what: str, attempts: int = 400) -> None:
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting: {what}")


async def _wait_idle(sandbox: httpx.AsyncClient) -> None:
    answer = (await sandbox.post("/_sandbox/wait-idle", json={"timeout": 30})).json()
    assert answer["idle"], answer


def _forgeries(
    provider_ids: list[str], client_refs: list[str], secret: str, rng: random.Random
) -> list[tuple[str, bytes, dict[str, str]]]:
    """(event id, body, headers) of webhooks that must never be stored."""
    forged = []
    for n in range(30):
        index = rng.randrange(len(provider_ids))
        payload = event_payload(
            status=rng.choice(["voided", "expired", "dispensed", "printed"]),
            provider_id=provider_ids[index],
            client_ref_id=client_refs[index],
            occurred_at=T0,
            event_id=f"evt_forged_{n}",
        )
        body = encode(payload)
        now = int(time.time())
        kind = n % 5
        if kind == 0:  # signed with a guessed secret
            headers = signed_headers(body, "guessed-secret")
        elif kind == 1:  # a real signature over another body
            headers = signed_headers(encode({**payload, "id": "evt_other"}), secret)
        elif kind == 2:  # a signature from 10 minutes ago (a replayed capture)
            headers = signed_headers(body, secret, now - 600)
        elif kind == 3:  # no signature at all
            headers = {"Content-Type": "application/json"}
        else:  # the right HMAC under another timestamp
            headers = {
                "Content-Type": "application/json",
                "X-Signature": sign(secret, now - 1, body),
                "X-Signature-Timestamp": str(now),
            }
        forged.append((payload["id"], body, headers))
    return forged


@pytest.fixture
async def sandbox_and_rxroute(
    db: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """(a client of the sandbox's control API, rxroute's base URL), wired to each other."""
    secret = settings.webhook_secret.get_secret_value()
    async with served(create_app(settings)) as rxroute_url:
        config = storm_config(rxroute_url + "/webhooks/erx", secret)
        async with SandboxServer(config) as sandbox:
            erx = SignatureRxClient(settings.model_copy(update={"erx_base_url": sandbox.url}))
            monkeypatch.setitem(db.services, "erx", erx)
            async with httpx.AsyncClient(base_url=sandbox.url, trust_env=False) as control:
                yield control, rxroute_url
            await erx.aclose()


@pytest.mark.slow
async def test_storm_ends_true_to_the_platform(
    db: Runtime, sandbox_and_rxroute: tuple[httpx.AsyncClient, str]
) -> None:
    sandbox, rxroute_url = sandbox_and_rxroute
    secret = db.settings.webhook_secret.get_secret_value()
    rng = random.Random(7)
    ids = await queued_region_b(db, COUNT)

    async with background_worker(), httpx.AsyncClient(trust_env=False) as outsider:
        # 1. Issue every prescription through the real client and send job.
        gate = asyncio.Semaphore(10)

        async def send(pid: uuid.UUID) -> str:
            async with gate:
                outcome = await sending.send(db, pid, schedule_retry=sending.RetryScheduler())
                return outcome.result

        assert await asyncio.gather(*(send(pid) for pid in ids)) == ["issued"] * COUNT
        async with db.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(Prescription.id, Prescription.provider_prescription_id).where(
                        Prescription.id.in_(ids)
                    )
                )
            ).all()
        provider_of = {pid: provider_id for pid, provider_id in rows}
        assert all(provider_of.values())

        async def all_signed() -> bool:
            remote = await _sandbox_prescriptions(sandbox)
            return all(remote[provider_of[pid]]["status"] == "signed" for pid in ids)

        await _until(all_signed, "every prescription signed on the platform")

        # 2. Drive them to their finals, interleaved, with forgeries in between.
        def actions(group: list[int]) -> list[tuple[int, str]]:
            queues = {i: list(SCRIPTS[i % len(SCRIPTS)]) for i in group}
            out = []
            while queues:
                i = rng.choice(sorted(queues))
                out.append((i, queues[i].pop(0)))
                if not queues[i]:
                    del queues[i]
            return out

        forged = _forgeries(
            [provider_of[pid] for pid in ids], [str(pid) for pid in ids], secret, rng
        )
        delivered_group = list(range(COUNT - LOST))
        for i, action in actions(delivered_group):
            answer = await sandbox.post(f"/_sandbox/prescriptions/{provider_of[ids[i]]}/{action}")
            assert answer.json()["success"] is True, answer.text
            if forged:
                event_id, body, headers = forged.pop()
                refused = await outsider.post(
                    rxroute_url + "/webhooks/erx", content=body, headers=headers
                )
                assert refused.status_code in (400, 401), (event_id, refused.text)
        assert not forged
        await _wait_idle(sandbox)

        # 3. The webhook URL breaks: these finals never arrive.
        await sandbox.put("/_sandbox/webhook", json={"url": None})
        for i, action in actions(list(range(COUNT - LOST, COUNT))):
            answer = await sandbox.post(f"/_sandbox/prescriptions/{provider_of[ids[i]]}/{action}")
            assert answer.json()["success"] is True, answer.text
        await _wait_idle(sandbox)

    await run_jobs(db)  # anything the stopped worker left
    stats = (await sandbox.get("/_sandbox/stats")).json()
    events = (await sandbox.get("/_sandbox/events")).json()["events"]
    remote = await _sandbox_prescriptions(sandbox)
    # The storm only proves something if the sandbox really misbehaved.
    assert stats["webhook_duplicates_sent"] > 0, stats
    assert stats["webhooks_reordered"] > 0, stats
    assert stats["webhook_attempts_dropped"] > 0, stats
    assert any(e["outcome"] == "no webhook url" for e in events)

    lost_for_good = {e["id"] for e in events if e["outcome"] != "delivered"}
    not_yet = [pid for pid in ids if await _status(db, pid) != remote[provider_of[pid]]["status"]]
    # Every prescription of the broken-URL phase is behind, and nothing else is wrong yet
    # except where the sandbox gave an event up.
    assert {ids.index(pid) for pid in not_yet} >= set(range(COUNT - LOST, COUNT))
    lost_prescriptions = {e["prescription_id"] for e in events if e["id"] in lost_for_good}
    assert {provider_of[pid] for pid in not_yet} <= lost_prescriptions

    # 4. Reconciliation, as if the quiet time had passed.
    later = datetime.now(UTC) + timedelta(seconds=db.settings.reconcile_after_seconds + 1)
    counts = await reconcile_once(now=later)
    assert counts["errors"] == 0, counts
    assert counts["changed"] == len(not_yet), counts

    # 5. The verdict.
    # What reached rxroute: the events the sandbox delivered, and those whose answer it never
    # saw (a timeout on a loaded machine) although rxroute verified and stored them.
    async with db.sessionmaker() as session:
        heard = set(await session.scalars(select(InboundWebhookEvent.provider_event_id)))
    delivered_statuses: dict[str, set[str]] = {}
    for event in events:
        if event["outcome"] == "delivered" or event["id"] in heard:
            delivered_statuses.setdefault(event["prescription_id"], set()).add(event["status"])
    for pid in ids:
        truth = remote[provider_of[pid]]
        status, history = await status_and_history(db, pid)
        assert status == truth["status"], (pid, status, truth)
        platform_history = [h["status"] for h in truth["status_history"]]
        counted = Counter(e.status for e in history if e.status in platform_history)
        assert all(n == 1 for n in counted.values()), (pid, counted)
        expected = {"issued", truth["status"]} | delivered_statuses.get(provider_of[pid], set())
        assert set(counted) == expected, (pid, counted, platform_history)
        assert set(counted) <= set(platform_history)
        final_row = next(e for e in history if e.status == truth["status"])
        expected_source = (
            "webhook"
            if truth["status"] in delivered_statuses.get(provider_of[pid], set())
            else "poll"
        )
        assert final_row.source == expected_source, (pid, final_row.source)
        # No history row that is not the platform's (or our own sending steps).
        assert {e.status for e in history} <= {"queued", "sending", *platform_history}

    async with db.sessionmaker() as session:
        stored = list(await session.scalars(select(InboundWebhookEvent)))
    stored_ids = Counter(e.provider_event_id for e in stored)
    assert not [i for i in stored_ids if i.startswith("evt_forged_") or i == "evt_other"]
    assert all(n == 1 for n in stored_ids.values())
    delivered_ids = {e["id"] for e in events if e["outcome"] == "delivered"}
    assert set(stored_ids) == delivered_ids
    assert {e.state for e in stored} == {"processed"}


async def _status(runtime: Runtime, pid: uuid.UUID) -> str:
    async with runtime.sessionmaker() as session:
        value = await session.scalar(select(Prescription.status).where(Prescription.id == pid))
    assert value is not None
    return value
