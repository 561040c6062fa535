"""Each request gets an id (the caller's or a new one), one log line and one metric sample.

The request log is pure ASGI middleware (:mod:`rxroute.web.request_log`); these tests pin
what it promised as ``@app.middleware("http")``: the id echoed in ``X-Request-ID`` and
visible to handlers as ``request.state.request_id``, the path logged with typed-in text
masked, the status of the response actually sent, a mounted app's path whole.
"""

from __future__ import annotations

import httpx
from structlog.testing import capture_logs

from rxroute.runtime import Runtime

EMAIL = "jane.doe@example.com"


async def test_a_callers_id_is_echoed_and_logged(db: Runtime, client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        response = await client.get("/api/v1/auth/me", headers={"X-Request-ID": "req-abc-123"})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "req-abc-123"
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["request_id"] == "req-abc-123"
    assert line["status"] == 401 and line["method"] == "GET"
    assert line["path"] == "/api/v1/auth/me"
    assert line["duration_ms"] >= 0


async def test_without_an_id_each_request_gets_its_own(
    db: Runtime, client: httpx.AsyncClient
) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    ids = {first.headers["X-Request-ID"], second.headers["X-Request-ID"]}
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)


async def test_typed_text_in_a_path_is_masked_and_the_sent_status_logged(
    db: Runtime, client: httpx.AsyncClient
) -> None:
    with capture_logs() as logs:
        response = await client.get(f"/api/v1/prescriptions/{EMAIL}")
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["status"] == response.status_code
    assert EMAIL not in str(line)
    assert line["path"] == "/api/v1/prescriptions/<masked>"


async def test_a_mounted_apps_path_is_logged_whole(db: Runtime, client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        response = await client.get("/static/app.css")
    assert response.status_code == 200
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["path"] == "/static/app.css"
    assert response.headers["X-Request-ID"] == line["request_id"]
