"""One HTTP exchange with the Region B platform: send, time, record, type the no-answer case.

Every call the client makes (token grant, login, API call) goes through :class:`Transport`,
so the request-duration metric, capture mode (:mod:`.capture`) and the rule for a request
that got no answer are applied once: retryable always, and ambiguous unless the error proves
nothing left this process (the platform does not deduplicate, so an ambiguous issue must be
looked up before any retry). What the answer means is :mod:`.envelope`'s business.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from typing import Any, NoReturn

import httpx
import structlog

from rxroute.channels.erx.capture import CaptureWriter
from rxroute.channels.erx.errors import RetryableError
from rxroute.observability.metrics import PLATFORM_REQUEST_SECONDS

log = structlog.get_logger(__name__)


@functools.lru_cache(maxsize=256)
def parsed_url(url: str) -> httpx.URL:
    """``url`` parsed once: httpx parses a string URL on every request (two fifths of
    building one), and the platform's URLs are a handful of fixed ones plus one per
    prescription acted on. Bounded, and holding only URLs (platform IDs, never PHI)."""
    return httpx.URL(url)


class Transport:
    """Sends requests over ``http`` (owned and closed by the client, not here)."""

    def __init__(
        self, http: httpx.AsyncClient, timeout_seconds: float, capture: CaptureWriter | None
    ) -> None:
        self._http = http
        self._timeout = httpx.Timeout(timeout_seconds)
        self._capture = capture

    async def send(
        self,
        method: str,
        url: str,
        operation: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        request = self._http.build_request(
            method,
            parsed_url(url),
            headers=dict(headers),
            json=json,
            data=data,
            params=params,
            timeout=self._timeout,
        )
        started = time.perf_counter()
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            PLATFORM_REQUEST_SECONDS.labels(operation=operation, result=type(exc).__name__).observe(
                time.perf_counter() - started
            )
            await self._transport_failure(operation, request, exc)
        PLATFORM_REQUEST_SECONDS.labels(
            operation=operation, result=str(response.status_code)
        ).observe(time.perf_counter() - started)
        await self._record(operation, request, response, None)
        log.debug("erx.http", operation=operation, status=response.status_code)
        return response

    async def _transport_failure(
        self, operation: str, request: httpx.Request, exc: httpx.TransportError
    ) -> NoReturn:
        """Raise the typed failure for a request that got no answer: retryable, and
        ambiguous unless the error proves nothing left this process."""
        await self._record(operation, request, None, exc)
        log.warning("erx.transport", operation=operation, error=type(exc).__name__)
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            # Nothing left this process: safe to retry, nothing to look up.
            raise RetryableError(
                f"{operation}: could not reach the platform ({type(exc).__name__})",
                ambiguous=False,
                operation=operation,
            ) from exc
        # ReadTimeout, RemoteProtocolError, ReadError, write errors...: the request may have
        # been received and acted on.
        raise RetryableError(
            f"{operation}: no answer after sending ({type(exc).__name__})",
            ambiguous=True,
            operation=operation,
        ) from exc

    async def _record(
        self,
        operation: str,
        request: httpx.Request,
        response: httpx.Response | None,
        error: BaseException | None,
    ) -> None:
        if self._capture is None:
            return
        path = await asyncio.to_thread(self._capture.record, operation, request, response, error)
        log.debug("erx.capture", operation=operation, file=str(path))
