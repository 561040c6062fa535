"""Signing, the pharmacy email, the portal and the clock-driven expiry."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

import httpx

from .conftest import issue, login


async def _mail_for(client: httpx.AsyncClient, rx_id: str) -> dict[str, str]:
    for _ in range(100):
        messages = (await client.get("/_sandbox/mailbox")).json()["messages"]
        mine = [m for m in messages if m["prescription_id"] == rx_id]
        if mine:
            return mine[0]  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError("no email")


async def test_signing_waits_for_the_delay(client: httpx.AsyncClient) -> None:
    await client.put("/_sandbox/timings", json={"sign_delay_seconds": 60})
    headers = await login(client)
    rx_id = (await issue(client, headers))["data"]["prescription"]["id"]
    show = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers)
    assert show.json()["data"]["prescription"]["status"] == "issued"
    assert (await client.get("/_sandbox/mailbox")).json()["messages"] == []
    portal_token = show.json()["data"]["prescription"]["token"]
    not_yet = await client.get(f"/portal/{portal_token}")
    assert not_yet.status_code == 409
    await client.post("/_sandbox/clock/advance", json={"seconds": 60})
    show = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers)
    assert show.json()["data"]["prescription"]["status"] == "signed"


async def test_email_to_pharmacy_contact(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    rx_id = (await issue(client, headers))["data"]["prescription"]["id"]
    mail = await _mail_for(client, rx_id)
    assert mail["to"] == "pharmacy-b012@example.com"
    assert "Jane Testpatient" in mail["body"]
    assert "07/03/1985" in mail["body"]
    assert rx_id in mail["body"]
    assert mail["link"] in mail["body"]
    assert re.search(r"/portal/[A-Za-z0-9_-]{20,}$", mail["link"])
    page = await client.get("/mailbox")
    assert page.status_code == 200
    assert f'href="{mail["link"]}"' in page.text


async def test_portal_flow_and_one_time_token(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    rx_id = (await issue(client, headers))["data"]["prescription"]["id"]
    link = urlsplit((await _mail_for(client, rx_id))["link"]).path

    page = await client.get(link)
    assert page.status_code == 200
    assert rx_id in page.text and "Jane" in page.text
    options = re.findall(r'<option value="([^"]+)"', page.text)
    assert options == ["All Other Pharmacies", "Boots"]
    assert '<label for="pharmacy_group">' in page.text
    assert "Print</button>" in page.text and "Mark as dispensed</button>" in page.text

    no_group = await client.post(f"{link}/print", data={"pharmacy_group": ""})
    assert no_group.status_code == 422
    boots = await client.post(f"{link}/dispense", data={"pharmacy_group": "Boots"})
    assert boots.status_code == 422
    assert "Check the pharmacy group" in boots.text

    printed = await client.post(f"{link}/print", data={"pharmacy_group": "All Other Pharmacies"})
    assert printed.status_code == 303
    status = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers)
    assert status.json()["data"]["prescription"]["status"] == "printed"

    done = await client.post(f"{link}/dispense", data={"pharmacy_group": "All Other Pharmacies"})
    assert done.status_code == 200
    assert "dispensed" in done.text
    status = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers)
    history = [h["status"] for h in status.json()["data"]["prescription"]["status_history"]]
    assert history == ["issued", "signed", "printed", "dispensed"]

    reused = await client.get(link)
    assert reused.status_code == 410
    assert "already been used" in reused.text
    again = await client.post(f"{link}/dispense", data={"pharmacy_group": "All Other Pharmacies"})
    assert again.status_code == 410


async def test_unknown_portal_token_and_voided(client: httpx.AsyncClient) -> None:
    assert (await client.get("/portal/not-a-token")).status_code == 404
    headers = await login(client)
    rx = (await issue(client, headers))["data"]["prescription"]
    await client.post(f"/api/v1/prescriptions/{rx['id']}/void", headers=headers)
    gone = await client.get(f"/portal/{rx['token']}")
    assert gone.status_code == 410
    assert "voided" in gone.text


async def test_expiry_by_clock(client: httpx.AsyncClient) -> None:
    await client.put("/_sandbox/timings", json={"expire_after_seconds": 3600})
    headers = await login(client)
    rx_id = (await issue(client, headers))["data"]["prescription"]["id"]
    await client.post("/_sandbox/clock/advance", json={"seconds": 3599})
    # Re-login: the session would have lapsed with the clock.
    headers = await login(client)
    status = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers)
    assert status.json()["data"]["prescription"]["status"] == "signed"
    await client.post("/_sandbox/clock/advance", json={"seconds": 2})
    headers = await login(client)
    status = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers)
    assert status.json()["data"]["prescription"]["status"] == "expired"
    refused = await client.post(f"/_sandbox/prescriptions/{rx_id}/dispense")
    assert refused.json()["success"] is False


async def test_control_actions(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    rx_id = (await issue(client, headers))["data"]["prescription"]["id"]
    await client.get("/_sandbox/stats")
    printed = await client.post(f"/_sandbox/prescriptions/{rx_id}/print")
    assert printed.json()["data"]["prescription"]["status"] == "printed"
    expired = await client.post(f"/_sandbox/prescriptions/{rx_id}/expire")
    assert expired.json()["data"]["prescription"]["status"] == "expired"
    detail = (await client.get(f"/_sandbox/prescriptions/{rx_id}")).json()["data"]["prescription"]
    assert detail["portal_url"].endswith(detail["token"])
    bad = await client.post(f"/_sandbox/prescriptions/{rx_id}/explode")
    assert bad.status_code == 404
    missing = await client.post("/_sandbox/prescriptions/SRX000000000000/print")
    assert missing.status_code == 404


async def test_reset_keeps_accounts(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    await issue(client, headers)
    await client.put("/_sandbox/faults", json={"latency_ms": 5})
    reset = await client.post("/_sandbox/reset")
    assert reset.json()["success"] is True
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["prescriptions_issued"] == 0 and stats["token_grants"] == 0
    assert (await client.get("/_sandbox/faults")).json()["latency_ms"] == 0
    # Old tokens went with the state; accounts did not.
    assert (await client.get("/api/v1/clinics", headers=headers)).status_code == 401
    await login(client)


async def test_accounts_and_pages(client: httpx.AsyncClient) -> None:
    accounts = (await client.get("/_sandbox/accounts")).json()
    assert accounts["oauth_clients"][0]["client_id"] == "rxroute-demo-client"
    alice = accounts["prescribers"][0]
    assert {"email", "password", "secure_pin"} <= set(alice)
    assert accounts["webhook"]["secret"] == "demo-only-webhook-secret"
    assert {c["id"] for c in accounts["clinics"]} == {994, 995}
    home = await client.get("/")
    assert home.status_code == 200
    for href in ("/mailbox", "/deliveries", "/_sandbox/accounts", "/_sandbox/stats"):
        assert f'href="{href}"' in home.text
    assert (await client.get("/deliveries")).status_code == 200
    clock = await client.post("/_sandbox/clock/advance", json={"seconds": -1})
    assert clock.status_code == 422
