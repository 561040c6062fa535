"""A worker's own small HTTP server: ``/metrics`` for Prometheus, ``/healthz`` for liveness.

A worker serves no web traffic, so without this its counters (sends, platform latency,
dead letters) would be invisible. It runs in the worker's event loop, on its own port
(``rxroute worker --metrics-port``), with the same token rule as the web tier's
``/metrics``. The job-queue gauges are left to the web tier (one source, no double
counting in sums); in ``rxroute demo`` the in-process worker's metrics are on the app's
``/metrics`` already, since they share a process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rxroute.config import Settings
from rxroute.netutil import tcp_listener
from rxroute.observability.endpoints import scrape_allowed
from rxroute.observability.metrics import CONTENT_TYPE_LATEST, exposition

_START_TIMEOUT_SECONDS = 10.0


def worker_metrics_app(settings: Settings) -> Starlette:
    async def metrics(request: Request) -> Response:
        if not scrape_allowed(settings, request.headers.get("authorization", "")):
            return JSONResponse(
                {"detail": "metrics need 'Authorization: Bearer <RXROUTE_METRICS_TOKEN>'"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])


class _SideServer(uvicorn.Server):
    """uvicorn without its signal handlers: the worker owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving_worker_metrics(settings: Settings, host: str, port: int) -> AsyncIterator[int]:
    """Serve the worker's metrics while the block runs; yields the port (0 picks one)."""
    sock = tcp_listener(host, port)
    server = _SideServer(
        uvicorn.Config(
            worker_metrics_app(settings), log_config=None, access_log=False, lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="worker-metrics")
    try:
        async with asyncio.timeout(_START_TIMEOUT_SECONDS):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
