"""Webhooks to a real receiver on 127.0.0.1: signed, at least once, unordered."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx

from rxroute.sandbox import SandboxServer, verify

from .conftest import WEBHOOK_SECRET, Receiver, fast_config, issue, login


def expected_signature(timestamp: str, body: bytes) -> str:
    """The documented scheme, computed here from scratch rather than with the sandbox's helper."""
    message = timestamp.encode() + b"." + body
    return hmac.new(WEBHOOK_SECRET.encode(), message, hashlib.sha256).hexdigest()


async def _wait_idle(client: httpx.AsyncClient) -> None:
    response = await client.post("/_sandbox/wait-idle", json={"timeout": 20})
    assert response.json()["idle"] is True


async def test_signed_event_shape_and_signature(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.put("/_sandbox/webhook", json={"url": receiver.url})
    headers = await login(client)
    rx = (await issue(client, headers, client_ref_id="sig-1"))["data"]["prescription"]
    await receiver.wait_for(lambda events: len(events) >= 1)
    got = receiver.received[0]
    signature = got.headers["x-signature"]
    timestamp = got.headers["x-signature-timestamp"]
    assert re.fullmatch(r"[0-9a-f]{64}", signature)
    assert abs(int(timestamp) - time.time()) < 30
    assert signature == expected_signature(timestamp, got.body)
    assert verify(WEBHOOK_SECRET, int(timestamp), got.body, signature)
    tampered = got.body.replace(b'"signed"', b'"dispensed"')
    assert tampered != got.body
    assert signature != expected_signature(timestamp, tampered)
    assert signature != expected_signature(str(int(timestamp) + 1), got.body)
    event = receiver.events()[0]
    assert set(event) == {"id", "event", "created_at", "data"}
    assert event["event"] == "prescription.status_changed"
    assert event["data"] == {
        "prescription_id": rx["id"],
        "client_ref_id": "sig-1",
        "status": "signed",
        "previous_status": "issued",
        "occurred_at": event["data"]["occurred_at"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["created_at"])


async def test_failed_deliveries_are_retried_and_logged(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    await client.put("/_sandbox/webhook", json={"url": receiver.url})
    headers = await login(client)
    await issue(client, headers)
    await receiver.wait_for(lambda events: len(events) == 1)
    await _wait_idle(client)
    log = (await client.get("/_sandbox/deliveries")).json()["deliveries"]
    assert [(d["attempt"], d["status_code"], d["ok"]) for d in log] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert all(isinstance(d["latency_ms"], float | int) for d in log)
    assert log[0]["error"]
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["webhooks_delivered"] == 1 and stats["webhooks_failed"] == 2
    page = await client.get("/deliveries")
    assert log[0]["event_id"] in page.text
    # Each row's copy number, not Jinja's view of dict.copy (the method) for ``a.copy``.
    assert "built-in method" not in page.text
    assert f"<td>{log[0]['copy']}</td>" in page.text


async def test_gives_up_after_max_attempts_and_times_out(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.fail_first = 100
    await client.put("/_sandbox/timings", json={"webhook_max_attempts": 3})
    await client.put("/_sandbox/webhook", json={"url": receiver.url})
    headers = await login(client)
    await issue(client, headers)
    await _wait_idle(client)
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["webhooks_failed"] == 3 and stats["webhooks_given_up"] == 1
    # An address with nothing listening: a connection error is a failed try too.
    await client.put("/_sandbox/webhook", json={"url": "http://127.0.0.1:9/hook"})
    await issue(client, headers)
    await _wait_idle(client)
    errors = [d["error"] for d in (await client.get("/_sandbox/deliveries")).json()["deliveries"]]
    assert any("ConnectError" in (e or "") for e in errors)


async def test_slow_receiver_counts_as_failure(client: httpx.AsyncClient) -> None:
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from .conftest import ThreadedServer

    async def slow(request: Any) -> Response:
        await asyncio.sleep(1.0)
        return Response(status_code=200)

    with ThreadedServer(Starlette(routes=[Route("/slow", slow, methods=["POST"])])) as server:
        await client.put(
            "/_sandbox/timings", json={"webhook_timeout_seconds": 0.2, "webhook_max_attempts": 1}
        )
        await client.put("/_sandbox/webhook", json={"url": server.url + "/slow"})
        headers = await login(client)
        await issue(client, headers)
        await _wait_idle(client)
    log = (await client.get("/_sandbox/deliveries")).json()["deliveries"]
    assert log[0]["error"] == "no answer within timeout"


async def test_portal_flow_emits_signed_printed_dispensed(receiver: Receiver) -> None:
    config = fast_config()
    config.webhook.url = receiver.url
    async with (
        SandboxServer(config) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False) as client,
    ):
        headers = await login(client)
        rx_id = (await issue(client, headers, client_ref_id="flow-1"))["data"]["prescription"]["id"]
        await receiver.wait_for(lambda events: len(events) >= 1)
        mail = (await client.get("/_sandbox/mailbox")).json()["messages"][0]
        assert mail["link"].startswith(server.url)
        # Open the emailed link as the pharmacy would, then choose the staging group.
        page = await client.get(mail["link"])
        assert "All Other Pharmacies" in page.text and "Boots" in page.text
        path = urlsplit(mail["link"]).path
        group = {"pharmacy_group": "All Other Pharmacies"}
        assert (await client.post(f"{path}/print", data=group)).status_code == 303
        await receiver.wait_for(lambda events: len(events) >= 2)
        assert (await client.post(f"{path}/dispense", data=group)).status_code == 200
        await receiver.wait_for(lambda events: len(events) >= 3)
        assert (await client.get(mail["link"])).status_code == 410
    events = receiver.events()
    assert [e["data"]["prescription_id"] for e in events] == [rx_id] * 3
    assert [(e["data"]["previous_status"], e["data"]["status"]) for e in events] == [
        ("issued", "signed"),
        ("signed", "printed"),
        ("printed", "dispensed"),
    ]
    for got in receiver.received:
        timestamp = got.headers["x-signature-timestamp"]
        assert got.headers["x-signature"] == expected_signature(timestamp, got.body)


async def _burst(
    client: httpx.AsyncClient, receiver: Receiver, n: int, **faults: Any
) -> list[dict[str, Any]]:
    await client.put("/_sandbox/faults", json={"seed": 99, **faults})
    await client.put("/_sandbox/webhook", json={"url": receiver.url})
    headers = await login(client)
    for i in range(n):
        await issue(client, headers, client_ref_id=f"burst-{i}")
        # One request per issue lets each signing (one event) happen in issue order.
        await client.get("/_sandbox/stats")
    await _wait_idle(client)
    events: list[dict[str, Any]] = (await client.get("/_sandbox/events")).json()["events"]
    return events


async def test_duplicates_at_the_configured_rate(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    events = await _burst(client, receiver, 40, webhook_duplicate_rate=0.3)
    assert len(events) == 40
    duplicated = {e["id"] for e in events if e["duplicate"]}
    assert 4 <= len(duplicated) <= 24
    arrivals = Counter(e["id"] for e in receiver.events())
    assert {i for i, n in arrivals.items() if n == 2} == duplicated
    assert set(arrivals.values()) <= {1, 2}
    assert len(arrivals) == 40
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["webhook_duplicates_sent"] == len(duplicated)


async def test_reordering_at_the_configured_rate(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # A held event goes out after the next one, or after this long without one: long enough
    # that a loaded machine's gap between two issue calls cannot release it early.
    held_longer = await client.put("/_sandbox/timings", json={"reorder_hold_seconds": 10})
    assert held_longer.status_code == 200, held_longer.text
    events = await _burst(client, receiver, 40, webhook_reorder_rate=0.3)
    held = [i for i, e in enumerate(events) if e["reordered"]]
    assert 4 <= len(held) <= 24
    arrival = [e["id"] for e in receiver.events()]
    assert sorted(arrival) == sorted(e["id"] for e in events)
    for i in held:
        if i + 1 < len(events):
            # A held event goes out after the next one.
            assert arrival.index(events[i]["id"]) > arrival.index(events[i + 1]["id"])


async def test_dropped_tries_are_retried(client: httpx.AsyncClient, receiver: Receiver) -> None:
    await client.put("/_sandbox/timings", json={"webhook_max_attempts": 12})
    events = await _burst(client, receiver, 20, webhook_drop_rate=0.4)
    assert {e["id"] for e in receiver.events()} == {e["id"] for e in events}
    stats = (await client.get("/_sandbox/stats")).json()
    assert 4 <= stats["webhook_attempts_dropped"] <= 40
    log = (await client.get("/_sandbox/deliveries")).json()["deliveries"]
    assert any("dropped" in (d["error"] or "") for d in log)


async def test_no_webhook_url_records_undelivered(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    await issue(client, headers)
    await client.get("/_sandbox/stats")
    events = (await client.get("/_sandbox/events")).json()["events"]
    assert events and events[0]["outcome"] == "no webhook url"
