"""The sandbox's HTML pages: the list of prescriptions and the faults form.

The faults form must change exactly what ``PUT /_sandbox/faults`` and
``POST /_sandbox/faults/next`` change, refuse what they refuse (naming the field), and refuse
a post from another site's page.
"""

from __future__ import annotations

import httpx

from rxroute.sandbox import SandboxApp

from .conftest import issue, issue_payload, login


async def test_prescriptions_page_lists_what_was_issued(client: httpx.AsyncClient) -> None:
    empty = await client.get("/prescriptions")
    assert empty.status_code == 200
    assert 'id="no-prescriptions"' in empty.text
    headers = await login(client)
    issued = (await issue(client, headers, client_ref_id="rx-page-1"))["data"]["prescription"]
    page = await client.get("/prescriptions")
    assert page.status_code == 200
    assert f'id="rx-{issued["id"]}"' in page.text
    assert "rx-page-1" in page.text
    # The pharmacy by name, from the sandbox's contacts, not only its number.
    contact = (await client.get("/_sandbox/accounts")).json()["contacts"]
    name = next(c["name"] for c in contact if c["id"] == 5012)
    assert name in page.text
    home = await client.get("/")
    assert 'href="/prescriptions"' in home.text
    assert 'href="/faults"' in home.text


async def test_faults_form_saves_what_the_api_would(client: httpx.AsyncClient) -> None:
    page = await client.get("/faults")
    assert page.status_code == 200
    assert 'name="error_rate"' in page.text
    saved = await client.post(
        "/faults", data={"error_rate": "0.25", "latency_ms": "40", "seed": "7"}
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/faults?done=saved"
    faults = (await client.get("/_sandbox/faults")).json()
    assert (faults["error_rate"], faults["latency_ms"], faults["seed"]) == (0.25, 40, 7)
    # An empty seed is "random again", as JSON null is.
    await client.post("/faults", data={"seed": ""})
    assert (await client.get("/_sandbox/faults")).json()["seed"] is None


async def test_faults_form_refuses_bad_values_naming_each_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/_sandbox/faults")).json()
    refused = await client.post(
        "/faults", data={"error_rate": "1.5", "latency_ms": "soon", "webhook_drop_rate": "0.5"}
    )
    assert refused.status_code == 422
    assert 'id="fault-error_rate-error"' in refused.text
    assert 'id="fault-latency_ms-error"' in refused.text
    assert 'id="fault-webhook_drop_rate-error"' not in refused.text
    # What was typed stays in the form, so it can be corrected.
    assert 'value="soon"' in refused.text
    assert (await client.get("/_sandbox/faults")).json() == before


async def test_aimed_fault_form_arms_and_clears(client: httpx.AsyncClient) -> None:
    armed = await client.post(
        "/faults/next",
        data={"operation": "issue", "fault": "error", "count": "2", "status_code": "503"},
    )
    assert armed.status_code == 303
    listed = (await client.get("/_sandbox/faults/next")).json()["armed"]
    assert [(a["operation"], a["fault"], a["count"], a["status_code"]) for a in listed] == [
        ("issue", "error", 2, 503)
    ]
    page = await client.get("/faults")
    assert "issue: error 503 (2 of 2 left)" in page.text
    cleared = await client.post("/faults/next/clear", data={"operation": ""})
    assert cleared.status_code == 303
    assert (await client.get("/_sandbox/faults/next")).json()["armed"] == []


async def test_aimed_fault_form_names_every_bad_field(client: httpx.AsyncClient) -> None:
    refused = await client.post(
        "/faults/next", data={"operation": "sign", "fault": "error", "count": "0"}
    )
    assert refused.status_code == 422
    assert 'id="aimed-operation-error"' in refused.text
    assert 'id="aimed-count-error"' in refused.text
    assert (await client.get("/_sandbox/faults/next")).json()["armed"] == []


async def test_a_reject_fault_is_the_platforms_no_and_issues_nothing(
    client: httpx.AsyncClient, app: SandboxApp
) -> None:
    headers = await login(client)
    await client.post("/faults/next", data={"operation": "issue", "fault": "reject"})
    response = await client.post(
        "/api/v1/prescriptions",
        headers=headers,
        json=issue_payload(client_ref_id="rx-rejected"),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False
    assert "staged fault" in body["message"]
    assert app.sandbox.prescriptions == {}
    # Used up: the next issue goes through.
    assert (await issue(client, headers, client_ref_id="rx-after"))["success"] is True


async def test_a_post_from_another_site_is_refused(client: httpx.AsyncClient) -> None:
    before = (await client.get("/_sandbox/faults")).json()
    for headers in ({"origin": "http://attacker.example.com"}, {"sec-fetch-site": "cross-site"}):
        refused = await client.post("/faults", data={"error_rate": "1"}, headers=headers)
        assert refused.status_code == 403
        refused = await client.post(
            "/faults/next", data={"operation": "issue", "fault": "reject"}, headers=headers
        )
        assert refused.status_code == 403
    assert (await client.get("/_sandbox/faults")).json() == before
    assert (await client.get("/_sandbox/faults/next")).json()["armed"] == []
    # Its own pages (the browser says same-origin and names the sandbox) are accepted.
    own = await client.post(
        "/faults",
        data={"error_rate": "0.5"},
        headers={"origin": "http://sandbox.test", "sec-fetch-site": "same-origin"},
    )
    assert own.status_code == 303
