"""``POST /api/v1/prescriptions``: drafts written by a platform, idempotent by key.

The concurrency proof runs ``rxroute serve`` as its own process and sends it 20 requests at
once over real sockets, so the requests race in the database as a platform's would.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.scopes import Scope
from rxroute.apiclients.service import revoke_client
from rxroute.idempotency import REPLAYED_HEADER, purge_expired
from rxroute.maintenance.tasks import purge_idempotency_keys
from rxroute.models import ApiClient, IdempotencyKey, Patient, Prescriber, Prescription, Role
from rxroute.runtime import Runtime
from tests.apiclients.helpers import bearer, make_api_key
from tests.auth.helpers import session_token
from tests.factories import make_patient, make_pharmacy, make_prescriber, make_user

URL = "/api/v1/prescriptions"
RXROUTE = str(Path(sys.executable).parent / "rxroute")


class World:
    patient: Patient
    prescriber: Prescriber
    key: str
    client_id: uuid.UUID


@pytest.fixture
async def world(session: AsyncSession, runtime: Runtime) -> World:
    w = World()
    w.patient = await make_patient(session, external_id="pt-7001")
    w.prescriber = await make_prescriber(session, runtime.secret_box, external_id="dr-7001")
    await session.commit()
    w.key = await make_api_key(session, Scope.PRESCRIPTIONS_WRITE, name="platform-one")
    client_id = await session.scalar(select(ApiClient.id).where(ApiClient.name == "platform-one"))
    assert client_id is not None
    w.client_id = client_id
    return w


def body(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "patient_external_id": "pt-7001",
        "prescriber_external_id": "dr-7001",
        "external_id": "rx-7001",
        "items": [
            {
                "description": "Semaglutide 0.25mg/0.19ml pen",
                "quantity": "1 pen",
                "directions": "Inject 0.25mg once weekly",
                "dmd_vpid": "39113611000001102",
            }
        ],
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def headers(key: str, idempotency_key: str | None = "key-1") -> dict[str, str]:
    sent = bearer(key)
    if idempotency_key is not None:
        sent["Idempotency-Key"] = idempotency_key
    return sent


async def _count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Prescription)) or 0)


async def test_a_draft_is_created_and_reads_back_the_same(
    client: httpx.AsyncClient, world: World, session: AsyncSession, runtime: Runtime
) -> None:
    response = await client.post(URL, json=body(), headers=headers(world.key))
    assert response.status_code == 201, response.text
    assert REPLAYED_HEADER not in response.headers
    out = response.json()
    assert out["external_id"] == "rx-7001"
    assert out["status"] == "draft" and out["region"] == "B" and out["pharmacy"] is None
    assert out["items"] == [
        {
            "description": "Semaglutide 0.25mg/0.19ml pen",
            "quantity": "1 pen",
            "directions": "Inject 0.25mg once weekly",
            "dmd_vpid": "39113611000001102",
            "dmd_apid": None,
        }
    ]
    stored = await session.get(Prescription, uuid.UUID(out["id"]))
    assert stored is not None
    assert (stored.patient_id, stored.prescriber_id) == (world.patient.id, world.prescriber.id)

    user = await make_user(session, Role.PATIENT, patient=world.patient)
    await session.commit()
    token = await session_token(runtime, user.id)
    detail = await client.get(f"{URL}/{out['id']}", headers={"Authorization": f"Bearer {token}"})
    assert detail.status_code == 200
    assert {name: detail.json()[name] for name in out} == out


async def test_the_prescriber_may_be_named_by_rxroutes_id(
    client: httpx.AsyncClient, world: World
) -> None:
    sent = body(prescriber_external_id=None, prescriber_id=str(world.prescriber.id))
    response = await client.post(URL, json=sent, headers=headers(world.key))
    assert response.status_code == 201, response.text


async def test_the_same_key_and_body_replays_the_first_answer(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    first = await client.post(URL, json=body(), headers=headers(world.key))
    assert first.status_code == 201
    again = await client.post(URL, json=body(), headers=headers(world.key))
    assert again.status_code == 201
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.content == first.content
    # The same JSON written differently (key order, spacing) is the same request.
    reordered = json.dumps(dict(reversed(list(body().items()))), indent=2)
    third = await client.post(
        URL,
        content=reordered,
        headers={**headers(world.key), "Content-Type": "application/json"},
    )
    assert third.status_code == 201 and third.headers[REPLAYED_HEADER] == "true"
    assert third.content == first.content
    assert await _count(session) == 1


async def test_the_same_key_with_another_body_is_a_422_naming_the_conflict(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    assert (await client.post(URL, json=body(), headers=headers(world.key))).status_code == 201
    changed = body(items=[{"description": "Other", "quantity": "2", "directions": "Daily"}])
    response = await client.post(URL, json=changed, headers=headers(world.key))
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["Idempotency-Key"]
    assert "different request" in response.json()["detail"]
    assert REPLAYED_HEADER not in response.headers
    assert await _count(session) == 1


async def test_keys_belong_to_one_client(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    other = await make_api_key(session, Scope.PRESCRIPTIONS_WRITE, name="platform-two")
    first = await client.post(URL, json=body(), headers=headers(world.key))
    second = await client.post(URL, json=body(external_id=None), headers=headers(other))
    assert (first.status_code, second.status_code) == (201, 201)
    assert REPLAYED_HEADER not in second.headers
    assert first.json()["id"] != second.json()["id"]


@pytest.mark.parametrize("key", [None, "", "k" * 256])
async def test_the_idempotency_key_header_is_required(
    client: httpx.AsyncClient, world: World, session: AsyncSession, key: str | None
) -> None:
    response = await client.post(URL, json=body(), headers=headers(world.key, key))
    assert response.status_code == 400, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["Idempotency-Key"]
    assert "Idempotency-Key header" in response.json()["detail"]
    assert await _count(session) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"patient_external_id": "pt-nobody"}, "patient_external_id"),
        ({"prescriber_external_id": "dr-nobody"}, "prescriber_external_id"),
        (
            {"prescriber_external_id": None, "prescriber_id": str(uuid.uuid4())},
            "prescriber_id",
        ),
        ({"prescriber_id": str(uuid.uuid4())}, "prescriber_id"),  # both given
        ({"prescriber_external_id": None}, "prescriber_id"),  # neither
        ({"prescriber_id": "not-a-uuid"}, "prescriber_id"),
        ({"items": []}, "items"),
        ({"items": [{"description": "x", "quantity": "1", "directions": "d"}] * 21}, "items"),
        (
            {"items": [{"description": "", "quantity": "1", "directions": "d"}]},
            "items.0.description",
        ),
        (
            {"items": [{"description": "x", "quantity": "1", "directions": "d", "dmd_apid": "A1"}]},
            "items.0.dmd_apid",
        ),
        ({"external_id": " padded"}, "external_id"),
        ({"patient": "pt-7001"}, "patient"),
    ],
)
async def test_refused_inputs_are_named(
    client: httpx.AsyncClient,
    world: World,
    session: AsyncSession,
    changes: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(URL, json=body(**changes), headers=headers(world.key))
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await _count(session) == 0
    assert await session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


async def test_a_refused_request_leaves_its_key_free_for_the_fixed_retry(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    """Nothing was created, so nothing is stored: once the patient exists, the retry runs."""
    early = await client.post(
        URL, json=body(patient_external_id="pt-7002"), headers=headers(world.key)
    )
    assert early.status_code == 422
    await make_patient(session, external_id="pt-7002")
    await session.commit()
    retry = await client.post(
        URL, json=body(patient_external_id="pt-7002"), headers=headers(world.key)
    )
    assert retry.status_code == 201 and REPLAYED_HEADER not in retry.headers


async def test_a_taken_external_id_is_a_409(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    assert (await client.post(URL, json=body(), headers=headers(world.key))).status_code == 201
    taken = await client.post(URL, json=body(), headers=headers(world.key, "key-2"))
    assert taken.status_code == 409
    assert [e["field"] for e in taken.json()["errors"]] == ["external_id"]
    assert await _count(session) == 1


async def test_keys_need_the_prescriptions_write_scope(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    assert (
        await client.post(URL, json=body(), headers={"Idempotency-Key": "k"})
    ).status_code == 401
    reader = await make_api_key(session, Scope.PRESCRIPTIONS_READ, Scope.PATIENTS_WRITE)
    refused = await client.post(URL, json=body(), headers=headers(reader))
    assert refused.status_code == 403 and "prescriptions:write" in refused.json()["detail"]
    await revoke_client(session, "platform-one")
    await session.commit()
    revoked = await client.post(URL, json=body(), headers=headers(world.key))
    assert revoked.status_code == 401
    assert await _count(session) == 0


async def _advisory_locks_held(runtime: Runtime) -> int:
    async with runtime.engine.connect() as connection:
        held = await connection.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        )
    return int(held or 0)


async def test_a_request_while_the_first_is_in_flight_is_a_409(
    client: httpx.AsyncClient, world: World, runtime: Runtime, session: AsyncSession
) -> None:
    """The first request is held mid-flight for real: another transaction has inserted (and
    not committed) a prescription with the same external_id, so the first request's insert
    waits on the unique index while it holds its key."""
    async with runtime.sessionmaker() as blocker:
        taken = Prescription(
            patient_id=world.patient.id, prescriber_id=world.prescriber.id, external_id="rx-7001"
        )
        blocker.add(taken)
        await blocker.flush()
        first = asyncio.create_task(client.post(URL, json=body(), headers=headers(world.key)))
        try:
            for _ in range(500):
                if await _advisory_locks_held(runtime) == 1:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the first request never took its key")
            await asyncio.sleep(0.2)
            assert not first.done()

            second = await asyncio.wait_for(
                client.post(URL, json=body(), headers=headers(world.key)), 10
            )
            assert second.status_code == 409, second.text
            assert [e["field"] for e in second.json()["errors"]] == ["Idempotency-Key"]
            assert "still in progress" in second.json()["detail"]
        finally:
            await blocker.rollback()

    answered = await asyncio.wait_for(first, 10)
    assert answered.status_code == 201, answered.text
    replay = await client.post(URL, json=body(), headers=headers(world.key))
    assert replay.status_code == 201 and replay.headers[REPLAYED_HEADER] == "true"
    assert replay.content == answered.content
    assert await _count(session) == 1


async def test_keys_expire_after_the_retention(
    client: httpx.AsyncClient, world: World, session: AsyncSession, runtime: Runtime
) -> None:
    hours = runtime.settings.idempotency_retention_hours
    assert hours >= 24
    first = await client.post(URL, json=body(), headers=headers(world.key))
    kept = await client.post(
        URL, json=body(external_id="rx-7002"), headers=headers(world.key, "k2")
    )
    assert (first.status_code, kept.status_code) == (201, 201)

    almost = datetime.now(UTC) - timedelta(hours=hours) + timedelta(minutes=5)
    await session.execute(update(IdempotencyKey).values(created_at=almost))
    await session.commit()
    assert await purge_expired(runtime) == 0
    still = await client.post(URL, json=body(), headers=headers(world.key))
    assert still.headers.get(REPLAYED_HEADER) == "true"

    expired = datetime.now(UTC) - timedelta(hours=hours, minutes=1)
    await session.execute(
        update(IdempotencyKey).where(IdempotencyKey.key == "key-1").values(created_at=expired)
    )
    await session.commit()
    # Past retention the key is gone even before the purge runs: it is free for a new request.
    fresh = await client.post(URL, json=body(external_id="rx-7003"), headers=headers(world.key))
    assert fresh.status_code == 201 and REPLAYED_HEADER not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]

    await session.execute(
        update(IdempotencyKey).where(IdempotencyKey.key == "k2").values(created_at=expired)
    )
    await session.commit()
    assert await purge_idempotency_keys(0) == 1  # the hourly job
    left = (await session.scalars(select(IdempotencyKey.key))).all()
    assert left == ["key-1"]  # the fresh one


async def test_a_platform_draft_is_sent_by_its_patient(
    client: httpx.AsyncClient, world: World, session: AsyncSession, runtime: Runtime
) -> None:
    created = await client.post(URL, json=body(), headers=headers(world.key))
    assert created.status_code == 201
    pharmacy = await make_pharmacy(session, "B", platform_contact_id=5002)
    user = await make_user(session, Role.PATIENT, patient=world.patient)
    await session.commit()
    token = await session_token(runtime, user.id)
    sent = await client.post(
        f"{URL}/{created.json()['id']}/send",
        json={"region": "B", "pharmacy_id": str(pharmacy.id)},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "queued"


# --- 20 at once, against a real server ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """``rxroute serve`` in its own process, on the test database."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env.update(RXROUTE_DATABASE_URL=database_url, RXROUTE_LOG_LEVEL="WARNING")
    process = subprocess.Popen(
        [RXROUTE, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise AssertionError(f"rxroute serve exited with {process.returncode}")
            time.sleep(0.1)
        else:
            raise AssertionError("rxroute serve did not answer /healthz")
        yield base
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=server, limits=limits, timeout=30) as api:
        yield api


async def test_20_parallel_posts_with_one_key_create_one_prescription(
    http: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    gate = asyncio.Event()

    async def post() -> httpx.Response:
        await gate.wait()
        return await http.post(URL, json=body(), headers=headers(world.key, "parallel-key"))

    tasks = [asyncio.create_task(post()) for _ in range(20)]
    await asyncio.sleep(0.05)
    gate.set()
    responses = await asyncio.gather(*tasks)

    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, [r.text for r in responses]
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if REPLAYED_HEADER not in r.headers]
    assert len(originals) == 1, statuses
    assert {r.content for r in created} == {originals[0].content}
    for conflict in (r for r in responses if r.status_code == 409):
        assert [e["field"] for e in conflict.json()["errors"]] == ["Idempotency-Key"]
    assert await _count(session) == 1
    rows = (await session.scalars(select(IdempotencyKey))).all()
    assert [(row.key, row.client_id) for row in rows] == [("parallel-key", world.client_id)]

    # And after the race, every retry is the same answer.
    after = await http.post(URL, json=body(), headers=headers(world.key, "parallel-key"))
    assert after.status_code == 201 and after.headers[REPLAYED_HEADER] == "true"
    assert after.content == originals[0].content


async def test_a_patient_without_a_region_gets_a_draft_without_one(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await make_patient(session, external_id="pt-7004", region="")
    await session.commit()
    response = await client.post(
        URL, json=body(patient_external_id="pt-7004"), headers=headers(world.key)
    )
    assert response.status_code == 201, response.text
    assert response.json()["region"] is None  # chosen when the patient sends it


async def test_every_answer_is_documented_with_the_error_body(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    from rxroute.app import create_app
    from tests.test_openapi import _assert_documented

    document = create_app().openapi()
    operation = document["paths"][URL]["post"]
    assert "Idempotency-Key" in {p["name"] for p in operation["parameters"]}
    assert operation["security"] == [{"bearerAuth": []}, {"apiKey": ["prescriptions:write"]}]
    answers = [
        await client.post(URL, json=body(), headers={"Idempotency-Key": "k"}),
        await client.post(URL, json=body(), headers=headers(world.key, None)),
        await client.post(URL, json=body(items=[]), headers=headers(world.key)),
    ]
    assert (await client.post(URL, json=body(), headers=headers(world.key))).status_code == 201
    answers.append(await client.post(URL, json=body(), headers=headers(world.key, "k3")))
    assert [a.status_code for a in answers] == [401, 400, 422, 409]
    for answer in answers:
        _assert_documented(document, "POST", URL, answer)
