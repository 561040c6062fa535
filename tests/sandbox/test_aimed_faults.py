"""Aimed faults: one operation, a count, no dice; staged over HTTP as a test would stage them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rxroute.sandbox import SandboxServer

from .conftest import fast_config, get_access_token, issue_payload, login

NEXT = "/_sandbox/faults/next"


@pytest.fixture
async def tcp_client() -> AsyncIterator[httpx.AsyncClient]:
    """A real socket: a dropped connection only looks like the network over TCP."""
    async with (
        SandboxServer(fast_config()) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=10) as client,
    ):
        yield client


async def arm(client: httpx.AsyncClient, **spec: Any) -> dict[str, Any]:
    response = await client.post(NEXT, json=spec)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/_sandbox/stats")).json()
    return body


async def test_drop_the_answer_of_the_next_issue_only(tcp_client: httpx.AsyncClient) -> None:
    client = tcp_client
    headers = await login(client)  # warm tokens: the staged fault hits the issue itself
    armed = await arm(client, operation="issue", fault="drop_after_processing")
    assert armed["fault"] == {
        "id": 1,
        "operation": "issue",
        "fault": "drop_after_processing",
        "count": 1,
        "remaining": 1,
        "latency_ms": 0,
    }
    assert (await client.get(NEXT)).json()["armed"] == [armed["fault"]]
    # Calls of other operations pass untouched and do not use the fault up.
    assert (await client.get("/api/v1/clinics", headers=headers)).status_code == 200

    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(
            "/api/v1/prescriptions", headers=headers, json=issue_payload(client_ref_id="amb-1")
        )
    # Processed: the platform holds the copy although the client never heard back.
    held = (await client.get("/_sandbox/prescriptions")).json()["prescriptions"]
    assert [p["client_ref_id"] for p in held] == ["amb-1"]

    second = await client.post(
        "/api/v1/prescriptions", headers=headers, json=issue_payload(client_ref_id="amb-2")
    )
    assert second.status_code == 200
    assert second.json()["data"]["prescription"]["client_ref_id"] == "amb-2"
    assert (await client.get(NEXT)).json()["armed"] == []

    counted = await stats(client)
    assert counted["aimed_faults_fired"] == 1
    assert counted["aimed_faults_fired_by_operation"] == {"issue": {"drop_after_processing": 1}}
    assert counted["aimed_faults_armed"] == 0
    assert counted["issued_by_client_ref_id"] == {"amb-1": 1, "amb-2": 1}
    # The tokens stayed warm: one grant, one login, and no random fault was involved.
    assert (counted["token_grants"], counted["prescriber_logins"]) == (1, 1)
    assert (counted["injected_errors"], counted["injected_drops"]) == (0, 0)


async def test_fail_the_next_two_logins(client: httpx.AsyncClient) -> None:
    access = await get_access_token(client)
    await arm(client, operation="login", fault="error", count=2)
    credentials = {
        "email": "dr.alice.hartfield@example.com",
        "password": "sandbox-prescriber-alice",
    }
    answers = [
        await client.post(
            "/api/v1/login", headers={"Authorization": f"Bearer {access}"}, json=credentials
        )
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [500, 500, 200]
    assert answers[0].json() == {"success": False, "message": "Server Error"}
    assert answers[2].json()["success"] is True
    counted = await stats(client)
    # Not processed: the refused logins never reached the platform's login.
    assert counted["prescriber_logins"] == 1
    assert counted["aimed_faults_fired_by_operation"] == {"login": {"error": 2}}


@pytest.mark.parametrize(
    ("status_code", "content_type"),
    [(500, "application/json"), (502, "text/html; charset=utf-8"), (503, "application/json")],
)
async def test_error_status_is_chosen_not_drawn(
    client: httpx.AsyncClient, status_code: int, content_type: str
) -> None:
    headers = await login(client)
    await arm(client, operation="lookup", fault="error", status_code=status_code)
    params = {"client_ref_id": "rx-0001"}
    failed = await client.get("/api/v1/prescriptions", headers=headers, params=params)
    assert (failed.status_code, failed.headers["content-type"]) == (status_code, content_type)
    again = await client.get("/api/v1/prescriptions", headers=headers, params=params)
    assert again.status_code == 200


async def test_each_operation_is_hit_only_by_its_own_fault(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    issued = await client.post("/api/v1/prescriptions", headers=headers, json=issue_payload())
    prescription_id = issued.json()["data"]["prescription"]["id"]
    base = "/api/v1/prescriptions"
    calls = {
        "clinics": ("GET", "/api/v1/clinics", None),
        "contacts": ("GET", "/api/v1/contacts", None),
        "lookup": ("GET", base, None),
        "get": ("GET", f"{base}/{prescription_id}", None),
        "void": ("POST", f"{base}/{prescription_id}/void", None),
        "issue": ("POST", base, issue_payload(client_ref_id="rx-0002")),
    }
    # Armed in the reverse order of the calls, so a fault that matched the wrong
    # operation would fire on the first call instead of its own.
    for operation in reversed(calls):
        await arm(client, operation=operation, fault="error", status_code=503)
    for operation, (method, path, body) in calls.items():
        hit = await client.request(method, path, headers=headers, json=body)
        assert hit.status_code == 503, operation
        passed = await client.request(method, path, headers=headers, json=body)
        assert passed.status_code == 200, (operation, passed.text)
    fired = (await stats(client))["aimed_faults_fired_by_operation"]
    assert fired == {operation: {"error": 1} for operation in calls}

    await arm(client, operation="token", fault="error")
    with pytest.raises(AssertionError):
        await get_access_token(client)
    assert await get_access_token(client)


async def test_armed_faults_for_one_operation_fire_in_order(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    await arm(client, operation="clinics", fault="error", status_code=502, count=2)
    await arm(client, operation="clinics", fault="error", status_code=503)
    listed = (await client.get(NEXT)).json()["armed"]
    assert [(a["status_code"], a["remaining"]) for a in listed] == [(502, 2), (503, 1)]
    statuses = [(await client.get("/api/v1/clinics", headers=headers)).status_code]
    listed = (await client.get(NEXT)).json()["armed"]
    assert [(a["status_code"], a["remaining"]) for a in listed] == [(502, 1), (503, 1)]
    for _ in range(3):
        statuses.append((await client.get("/api/v1/clinics", headers=headers)).status_code)
    assert statuses == [502, 502, 503, 200]


async def test_latency_for_one_call(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    await arm(client, operation="contacts", fault="latency", latency_ms=300)
    started = time.monotonic()
    slow = await client.get("/api/v1/contacts", headers=headers)
    slow_seconds = time.monotonic() - started
    started = time.monotonic()
    fast = await client.get("/api/v1/contacts", headers=headers)
    fast_seconds = time.monotonic() - started
    assert (slow.status_code, fast.status_code) == (200, 200)
    assert slow_seconds >= 0.3
    assert fast_seconds < 0.3


async def test_latency_before_a_staged_error(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    await arm(client, operation="clinics", fault="error", latency_ms=200)
    started = time.monotonic()
    response = await client.get("/api/v1/clinics", headers=headers)
    assert response.status_code == 500
    assert time.monotonic() - started >= 0.2


async def test_aimed_fault_wins_and_does_not_shift_the_random_sequence(
    client: httpx.AsyncClient,
) -> None:
    headers = await login(client)

    async def statuses(n: int) -> list[int]:
        return [
            (await client.get("/api/v1/clinics", headers=headers)).status_code for _ in range(n)
        ]

    await client.put("/_sandbox/faults", json={"error_rate": 0.5, "seed": 7})
    random_only = await statuses(30)
    # Seed 7 makes the first call an error, so the aimed fault visibly overrides the dice.
    assert random_only[0] >= 500
    assert 200 in random_only

    await client.put("/_sandbox/faults", json={"seed": 7})
    await arm(client, operation="clinics", fault="latency", latency_ms=1)
    with_aimed = await statuses(30)
    # The aimed call is answered as aimed (a slow 200, whatever the dice said) and every
    # later call meets exactly the random fault it met without the aimed one.
    assert with_aimed == [200, *random_only[1:]]


async def test_drop_in_process_is_processed_too(client: httpx.AsyncClient) -> None:
    from rxroute.sandbox.app import ConnectionDroppedError

    headers = await login(client)
    await arm(client, operation="void", fault="drop_after_processing")
    issued = await client.post("/api/v1/prescriptions", headers=headers, json=issue_payload())
    prescription_id = issued.json()["data"]["prescription"]["id"]
    with pytest.raises(ConnectionDroppedError):
        await client.post(f"/api/v1/prescriptions/{prescription_id}/void", headers=headers)
    held = await client.get(f"/_sandbox/prescriptions/{prescription_id}")
    assert held.json()["data"]["prescription"]["status"] == "voided"


async def test_clear_one_operation_all_and_on_reset(client: httpx.AsyncClient) -> None:
    await arm(client, operation="issue", fault="error", count=3)
    await arm(client, operation="login", fault="drop_after_processing")
    await arm(client, operation="issue", fault="drop_after_processing")
    assert (await stats(client))["aimed_faults_armed"] == 5

    cleared = await client.delete(NEXT, params={"operation": "issue"})
    assert cleared.status_code == 200
    assert cleared.json()["cleared"] == 2
    assert [a["operation"] for a in cleared.json()["armed"]] == ["login"]

    everything = await client.delete(NEXT)
    assert everything.json() == {"cleared": 1, "armed": []}

    await arm(client, operation="token", fault="error", count=4)
    reset = await client.post("/_sandbox/reset")
    assert reset.status_code == 200
    assert (await client.get(NEXT)).json()["armed"] == []
    assert await get_access_token(client)
    assert (await stats(client))["aimed_faults_fired"] == 0


async def test_control_api_and_pages_are_never_aimed_at(client: httpx.AsyncClient) -> None:
    for operation in ("token", "login", "issue", "lookup", "get", "void", "clinics", "contacts"):
        await arm(client, operation=operation, fault="error")
    for path in ("/_sandbox/stats", "/_sandbox/faults", NEXT, "/", "/mailbox", "/deliveries"):
        assert (await client.get(path)).status_code == 200, path
    page = (await client.get("/")).text
    assert "issue error 500 (1 left)" in page
    assert (await stats(client))["aimed_faults_fired"] == 0


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"operation": "isue", "fault": "error"}, "operation", "'isue' is unknown"),
        ({"fault": "error"}, "operation", "is required"),
        ({"operation": "issue", "fault": "explode"}, "fault", "'explode' is unknown"),
        ({"operation": "issue"}, "fault", "is required"),
        ({"operation": "issue", "fault": "error", "count": 0}, "count", "from 1 to 1000"),
        ({"operation": "issue", "fault": "error", "count": -2}, "count", "from 1 to 1000"),
        ({"operation": "issue", "fault": "error", "count": 1001}, "count", "from 1 to 1000"),
        ({"operation": "issue", "fault": "error", "count": "2"}, "count", "whole number"),
        ({"operation": "issue", "fault": "error", "count": 1.5}, "count", "whole number"),
        ({"operation": "issue", "fault": "error", "count": True}, "count", "whole number"),
        ({"operation": "issue", "fault": "error", "status_code": 404}, "status_code", "500, 502"),
        (
            {"operation": "issue", "fault": "drop_after_processing", "status_code": 500},
            "status_code",
            'Only a fault of "error"',
        ),
        ({"operation": "issue", "fault": "latency"}, "latency_ms", "above 0"),
        ({"operation": "issue", "fault": "error", "latency_ms": -1}, "latency_ms", "0 to 120000"),
        ({"operation": "issue", "fault": "error", "cuont": 2}, "cuont", "Unknown field"),
    ],
)
async def test_bad_arming_is_422_naming_the_field(
    client: httpx.AsyncClient, spec: dict[str, Any], field: str, words: str
) -> None:
    response = await client.post(NEXT, json=spec)
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert list(body["errors"]) == [field]
    assert words in body["errors"][field][0]
    assert body["message"].startswith(f"{field}: ")
    assert (await client.get(NEXT)).json()["armed"] == []


async def test_bad_bodies_and_bad_clear(client: httpx.AsyncClient) -> None:
    not_json = await client.post(NEXT, content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    a_list = await client.post(NEXT, json=["issue"])
    assert a_list.status_code == 422
    empty = await client.post(NEXT)
    assert empty.status_code == 422
    assert set(empty.json()["errors"]) == {"operation", "fault"}
    every_problem = await client.post(NEXT, json={"operation": "x", "fault": "y", "count": 0})
    assert set(every_problem.json()["errors"]) == {"operation", "fault", "count"}
    bad_clear = await client.delete(NEXT, params={"operation": "nope"})
    assert bad_clear.status_code == 422
    assert "use one of token, login, issue" in bad_clear.json()["message"]
