"""A small local receiver of rxroute's events, for ``rxroute demo`` and the tests.

It does what a platform's receiver would: verifies each request with the ``standardwebhooks``
package (refusing a bad or stale signature with 400), drops repeats by ``webhook-id`` (they
are answered 2xx, as delivery is at least once), and keeps the events in memory to show on a
page. ``fail_next`` (or ``POST /api/faults {"fail_next": 3}``) makes the next answers 503, to
watch retries and ordering. It runs on a thread of its own, like the mail catcher, so one
object serves the blocking demo and async tests alike.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from jinja2 import DictLoader, Environment, select_autoescape
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from rxroute.netutil import tcp_listener

__all__ = ["DEFAULT_EVENTS_PORT", "EventReceiver", "ReceivedEvent"]

DEFAULT_EVENTS_PORT = 8027
EVENTS_PATH = "/events"
_START_TIMEOUT_SECONDS = 10.0
MAX_BODY_BYTES = 64 * 1024
CAPACITY = 1000
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="3">
<title>rxroute events receiver</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
 table { border-collapse: collapse; width: 100%; }
 th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #ddd; }
 .muted { color: #666; } code { font-size: .85em; }
</style></head><body>
<h1>Events received from rxroute</h1>
<p class="muted">{{ events|length }} event(s), newest first, each verified with the
<code>standardwebhooks</code> package. rxroute posts them to <code>{{ url }}</code>.
{% if repeats %}{{ repeats }} repeat(s) dropped by webhook-id.{% endif %}
{% if failing %}<strong>The next {{ failing }} request(s) will be answered 503.</strong>{% endif %}
Refreshes every 3 seconds.</p>
{% if events %}
<table><thead><tr><th>Received (UTC)</th><th>Type</th><th>Prescription</th><th>Status</th>
<th>Previous</th><th>Occurred</th><th>Region</th><th>webhook-id</th></tr></thead><tbody>
{% for e in events %}<tr>
<td>{{ e.received_at.strftime("%H:%M:%S") }}</td><td>{{ e.type }}</td>
<td><code>{{ e.data.get("prescription_id") }}</code></td><td>{{ e.data.get("status") }}</td>
<td>{{ e.data.get("previous_status") }}</td><td>{{ e.data.get("occurred_at") }}</td>
<td>{{ e.data.get("region") or "" }}</td><td><code>{{ e.message_id }}</code></td>
</tr>{% endfor %}
</tbody></table>
{% else %}<p>Nothing yet: send a prescription in rxroute and watch its events arrive.</p>{% endif %}
</body></html>
"""

_templates = Environment(
    loader=DictLoader({"page.html": _PAGE}), autoescape=select_autoescape(default=True)
)


@dataclass(frozen=True)
class ReceivedEvent:
    """One verified event as it arrived (the raw body and headers too, to verify again)."""

    message_id: str
    type: str
    data: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class EventReceiver:
    """Verifies and keeps rxroute's events; ``start()`` returns once it listens."""

    def __init__(
        self, secret: str, host: str = "127.0.0.1", port: int = DEFAULT_EVENTS_PORT
    ) -> None:
        self._webhook = Webhook(secret)
        self.host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._events: list[ReceivedEvent] = []
        self._seen: set[str] = set()
        self._repeats = 0
        self._fail_next = 0
        self._refused = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # --- what arrived -----------------------------------------------------------------------

    def events(self) -> list[ReceivedEvent]:
        """Verified events, first received first, repeats left out."""
        with self._lock:
            return list(self._events)

    @property
    def repeats(self) -> int:
        with self._lock:
            return self._repeats

    @property
    def refused(self) -> int:
        """Requests refused for a bad signature or body."""
        with self._lock:
            return self._refused

    def fail_next(self, count: int) -> None:
        """Answer the next ``count`` requests 503, before looking at them."""
        with self._lock:
            self._fail_next = max(0, count)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._seen.clear()
            self._repeats = self._fail_next = self._refused = 0

    # --- the app ----------------------------------------------------------------------------

    async def _receive(self, request: Request) -> Response:
        with self._lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                return JSONResponse({"detail": "staged failure"}, status_code=503)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return self._refuse("body too large", 413)
        headers = {key: value for key, value in request.headers.items()}
        try:
            payload = self._webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            return self._refuse(f"signature verification failed: {exc}", 400)
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            return self._refuse("not an rxroute event", 400)
        message_id = headers["webhook-id"]
        with self._lock:
            if message_id in self._seen:
                self._repeats += 1
                return Response(status_code=204)
            self._seen.add(message_id)
            self._events.append(
                ReceivedEvent(
                    message_id=message_id,
                    type=str(payload.get("type")),
                    data=payload["data"],
                    body=body,
                    headers=headers,
                )
            )
            del self._events[:-CAPACITY]
        return Response(status_code=204)

    def _refuse(self, detail: str, status_code: int) -> Response:
        with self._lock:
            self._refused += 1
        return JSONResponse({"detail": detail}, status_code=status_code)

    async def _page(self, request: Request) -> Response:
        with self._lock:
            events = list(reversed(self._events))
            repeats, failing = self._repeats, self._fail_next
        html = _templates.get_template("page.html").render(
            events=events, repeats=repeats, failing=failing, url=self.events_url
        )
        return HTMLResponse(html, headers={"Content-Security-Policy": _CSP})

    async def _list(self, request: Request) -> Response:
        return JSONResponse(
            [{"webhook_id": e.message_id, **json.loads(e.body)} for e in self.events()]
        )

    async def _faults(self, request: Request) -> Response:
        try:
            count = int((await request.json())["fail_next"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"detail": 'send {"fail_next": N} with N a whole number'}, status_code=422
            )
        self.fail_next(count)
        return JSONResponse({"fail_next": count})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self._page, methods=["GET"]),
                Route(EVENTS_PATH, self._receive, methods=["POST"]),
                Route("/api/events", self._list, methods=["GET"]),
                Route("/api/faults", self._faults, methods=["POST"]),
            ]
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("events receiver already started")
        sock = tcp_listener(self.host, self._requested_port)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="events-receiver", daemon=True
        )
        self._thread = thread
        thread.start()
        waited = threading.Event()
        for _ in range(int(_START_TIMEOUT_SECONDS / 0.02)):
            if server.started or not thread.is_alive():
                break
            waited.wait(0.02)
        if not server.started:
            self.stop()
            raise RuntimeError("events receiver did not start")

    def stop(self) -> None:
        """Idempotent, so a failed start and a test teardown can both call it."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT_SECONDS)
        self._server = None
        self._thread = None

    def __enter__(self) -> EventReceiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("events receiver not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def events_url(self) -> str:
        return self.url + EVENTS_PATH
