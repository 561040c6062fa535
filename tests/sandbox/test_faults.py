"""Fault injection: seeded, confined to the platform API, and real at the TCP level."""

from __future__ import annotations

import time

import httpx
import pytest

from rxroute.sandbox import SandboxServer
from rxroute.sandbox.app import ConnectionDroppedError

from .conftest import fast_config, get_access_token, issue_payload, login


async def _statuses(client: httpx.AsyncClient, headers: dict[str, str], n: int) -> list[int]:
    return [(await client.get("/api/v1/clinics", headers=headers)).status_code for _ in range(n)]


async def test_error_rate_is_seeded_and_bounded(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    await client.put("/_sandbox/faults", json={"error_rate": 0.5, "seed": 7})
    first = await _statuses(client, headers, 60)
    await client.put("/_sandbox/faults", json={"seed": 7})
    second = await _statuses(client, headers, 60)
    assert first == second
    errors = [s for s in first if s >= 500]
    assert 15 <= len(errors) <= 45
    assert set(errors) <= {500, 502, 503}
    assert set(first) - set(errors) == {200}
    assert (await client.get("/_sandbox/stats")).json()["injected_errors"] == 2 * len(errors)


async def test_faults_hit_token_endpoint_but_never_control_api(client: httpx.AsyncClient) -> None:
    await client.put("/_sandbox/faults", json={"error_rate": 1.0})
    token = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
    )
    assert token.status_code >= 500
    for path in ("/_sandbox/stats", "/_sandbox/faults", "/_sandbox/accounts", "/", "/mailbox"):
        assert (await client.get(path)).status_code == 200, path


async def test_latency_applies_to_api_only(client: httpx.AsyncClient) -> None:
    await client.put("/_sandbox/faults", json={"latency_ms": 200})
    started = time.monotonic()
    await client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    await client.get("/_sandbox/stats")
    assert time.monotonic() - started < 0.2


async def test_drop_in_process_raises_to_the_caller(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    await client.put("/_sandbox/faults", json={"drop_after_processing_rate": 1.0})
    with pytest.raises(ConnectionDroppedError):
        await client.post(
            "/api/v1/prescriptions", headers=headers, json=issue_payload(client_ref_id="drop-1")
        )
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["issued_by_client_ref_id"] == {"drop-1": 1}


async def test_drop_after_processing_over_real_tcp() -> None:
    async with (
        SandboxServer(fast_config()) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False) as client,
    ):
        headers = await login(client)
        await client.put("/_sandbox/faults", json={"drop_after_processing_rate": 1.0})
        with pytest.raises(httpx.TransportError):
            await client.post(
                "/api/v1/prescriptions",
                headers=headers,
                json=issue_payload(client_ref_id="drop-2"),
            )
        with pytest.raises(httpx.TransportError):
            await get_access_token(client)
        await client.put("/_sandbox/faults", json={"drop_after_processing_rate": 0.0})
        # The request was processed: the lookup the client must do before retrying finds it.
        found = await client.get(
            "/api/v1/prescriptions", headers=headers, params={"client_ref_id": "drop-2"}
        )
        assert len(found.json()["data"]["prescriptions"]) == 1
        stats = (await client.get("/_sandbox/stats")).json()
        assert stats["injected_drops"] == 2
        assert stats["token_grants"] == 2
