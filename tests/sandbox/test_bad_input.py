"""Bad input gets a platform-like JSON answer, never a 500."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rxroute.sandbox import create_app

from .conftest import fast_config, issue_payload, login


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    for raw in (
        b"{",
        b"\xff\xfe",
        b"[" * 100_000,
        b"",
        b"null",
        b'{"clinic_id": NaN, "qty": Infinity}',
    ):
        response = await client.post(
            "/api/v1/prescriptions",
            headers={**headers, "Content-Type": "application/json"},
            content=raw,
        )
        assert response.status_code in (400, 422), raw[:10]
        assert response.json()["success"] is False


async def test_wrong_content_type(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    response = await client.post(
        "/api/v1/prescriptions",
        headers={**headers, "Content-Type": "text/plain"},
        content=json.dumps(issue_payload()),
    )
    assert response.status_code == 415
    assert response.json()["success"] is False


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    headers = await login(client)
    payload = issue_payload(notes="x" * (300 * 1024))
    response = await client.post("/api/v1/prescriptions", headers=headers, json=payload)
    assert response.status_code == 413
    assert response.json()["success"] is False

    async def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 8192

    streamed = await client.post(
        "/api/v1/prescriptions",
        headers={**headers, "Content-Type": "application/json"},
        content=chunks(),
    )
    assert streamed.status_code == 413


async def test_unknown_routes_and_methods(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "message": "Not found."}
    wrong_method = await client.delete("/api/v1/prescriptions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["success"] is False


async def test_control_api_rejects_bad_settings(client: httpx.AsyncClient) -> None:
    typo = await client.put("/_sandbox/faults", json={"error_rat": 0.5})
    assert typo.status_code == 422
    out_of_range = await client.put("/_sandbox/faults", json={"error_rate": 2})
    assert out_of_range.status_code == 422
    assert (await client.get("/_sandbox/faults")).json()["error_rate"] == 0
    not_json = await client.put(
        "/_sandbox/webhook", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(sorted(issue_payload()) + sorted(issue_payload()["patient"]))


@st.composite
def mangled_payloads(draw: st.DrawFn) -> Any:
    """Mostly-valid payloads with a few fields replaced by arbitrary JSON."""
    if draw(st.booleans()):
        return draw(json_values)
    payload = issue_payload()
    for name in draw(st.lists(field_names, max_size=4)):
        target = payload if name in payload else payload["patient"]
        if isinstance(target, dict):
            target[name] = draw(json_values)
    return payload


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=mangled_payloads())
def test_random_payloads_never_5xx(body: Any) -> None:
    async def run() -> None:
        app = create_app(fast_config())
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as c:
                headers = await login(c)
                response = await c.post("/api/v1/prescriptions", headers=headers, json=body)
                assert response.status_code < 500, response.text
                assert response.json()["success"] in (True, False)
        finally:
            await app.sandbox.aclose()

    asyncio.run(run())
