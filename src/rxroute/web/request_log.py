"""Every HTTP request's id, duration metric and one log line, as pure ASGI middleware.

Pure ASGI rather than ``BaseHTTPMiddleware`` (``@app.middleware("http")``), which every
route paid for: it runs the rest of the app in a separate task, wraps the body in a
stream and builds a Request and a Response per request, about a third of a millisecond
of CPU in the benchmarks' server profiles (``bench/bench_webhooks.py``, ``bench_search``).
Here the request id goes into the scope's state, where ``request.state.request_id`` finds
it, and the status is read off the response's start message as it passes.

The log line names the route's path with ids left out (:func:`rxroute.logging.loggable_path`)
and the metric the route's template, never the path, so neither holds an id or a value a
person typed.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rxroute.logging import loggable_path
from rxroute.observability.metrics import HTTP_REQUEST_SECONDS

log = structlog.get_logger("rxroute.app")

REQUEST_ID_HEADER = b"x-request-id"


def logged_path(path: str, app: Any) -> str:
    """``path`` as logged: typed-in text masked, the app's own route words kept."""
    words: frozenset[str] = getattr(getattr(app, "state", None), "route_words", frozenset())
    return loggable_path(path, words)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            return str(value.decode("latin-1")) or uuid.uuid4().hex
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """Binds the request id to the log context, sets ``X-Request-ID``, observes and logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        # Read before routing: a mount rewrites the scope's path on the way in.
        method, path = str(scope.get("method", "")), str(scope.get("path", ""))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        self._record(scope, method, path, request_id, status, time.perf_counter() - started)

    @staticmethod
    def _record(
        scope: Scope, method: str, path: str, request_id: str, status: int, seconds: float
    ) -> None:
        route: Any = scope.get("route")
        HTTP_REQUEST_SECONDS.labels(
            # The template (/api/v1/prescriptions/{prescription_id}), never the path: ids
            # would make a series per prescription. Unmatched paths share one label.
            route=getattr(route, "path", None) or "unmatched",
            method=method,
            status=str(status),
        ).observe(seconds)
        log.info(
            "request",
            method=method,
            path=logged_path(path, scope.get("app")),
            status=status,
            duration_ms=round(seconds * 1000, 2),
            request_id=request_id,
        )
