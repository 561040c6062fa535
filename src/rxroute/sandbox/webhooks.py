"""Webhook delivery: at least once, unordered, with the faults a real sender shows.

Every random decision for an event (duplicate? hold back? which tries get lost?) is drawn
when the event is emitted, in emission order, so a seeded run behaves the same however the
network tasks happen to interleave.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .config import Faults, Timings, WebhookSettings
from .signing import sign

logger = logging.getLogger("rxroute.sandbox.webhooks")

EVENT_NAME = "prescription.status_changed"


@dataclass
class WebhookEvent:
    id: str
    prescription_id: str
    status: str
    body: bytes
    created_at: str
    duplicate: bool = False
    reordered: bool = False
    drops: list[bool] = field(default_factory=list)
    outcome: str = "pending"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prescription_id": self.prescription_id,
            "status": self.status,
            "created_at": self.created_at,
            "duplicate": self.duplicate,
            "reordered": self.reordered,
            "outcome": self.outcome,
            "payload": json.loads(self.body),
        }


@dataclass
class DeliveryAttempt:
    event_id: str
    prescription_id: str
    status: str
    attempt: int
    copy: int
    url: str | None
    status_code: int | None
    latency_ms: float
    error: str | None
    ok: bool
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "prescription_id": self.prescription_id,
            "status": self.status,
            "attempt": self.attempt,
            "copy": self.copy,
            "url": self.url,
            "status_code": self.status_code,
            "latency_ms": round(self.latency_ms, 1),
            "error": self.error,
            "ok": self.ok,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
        }


@dataclass
class DeliveryStats:
    events: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    duplicates_sent: int = 0
    reordered: int = 0
    dropped_attempts: int = 0


def build_event(
    *,
    prescription_id: str,
    client_ref_id: str,
    status: str,
    previous_status: str | None,
    occurred_at: str,
    created_at: str,
) -> tuple[str, bytes]:
    """The event ID and the exact bytes that will be signed and sent on every try."""
    event_id = "evt_" + uuid.uuid4().hex
    payload = {
        "id": event_id,
        "event": EVENT_NAME,
        "created_at": created_at,
        "data": {
            "prescription_id": prescription_id,
            "client_ref_id": client_ref_id,
            "status": status,
            "previous_status": previous_status,
            "occurred_at": occurred_at,
        },
    }
    return event_id, json.dumps(payload, separators=(",", ":")).encode("utf-8")


class WebhookDispatcher:
    def __init__(
        self,
        settings: Callable[[], WebhookSettings],
        timings: Callable[[], Timings],
        faults: Callable[[], Faults],
        rng: Callable[[], random.Random],
    ) -> None:
        # Callables, not values: a PUT to the control API must affect events already queued.
        self._settings = settings
        self._timings = timings
        self._faults = faults
        self._rng = rng
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: tuple[WebhookEvent, asyncio.Event] | None = None
        self._client: httpx.AsyncClient | None = None
        self.attempts: list[DeliveryAttempt] = []
        self.events: list[WebhookEvent] = []
        self.stats = DeliveryStats()

    def emit(self, event: WebhookEvent) -> None:
        """Queue an event; must be called from the event loop that owns the sandbox."""
        faults = self._faults()
        timings = self._timings()
        rng = self._rng()
        event.duplicate = rng.random() < faults.webhook_duplicate_rate
        hold = rng.random() < faults.webhook_reorder_rate
        event.drops = [
            rng.random() < faults.webhook_drop_rate for _ in range(timings.webhook_max_attempts * 2)
        ]
        self.events.append(event)
        self.stats.events += 1
        if self._settings().url is None:
            event.outcome = "no webhook url"
            return
        held, self._held = self._held, None
        if held is None and hold:
            event.reordered = True
            self.stats.reordered += 1
            release = asyncio.Event()
            self._held = (event, release)
            self._spawn(self._release_after_timeout(event, release))
            return
        first_done = asyncio.Event()
        self._spawn(self._deliver(event, wait_for=None, done=first_done))
        if held is not None:
            # The held event goes out only once the later one has had its first try.
            held_event, held_release = held
            held_release.set()
            self._spawn(self._deliver(held_event, wait_for=first_done, done=None))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_after_timeout(self, event: WebhookEvent, release: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(release.wait(), timeout=self._timings().reorder_hold_seconds)
        except TimeoutError:
            if self._held is not None and self._held[0] is event:
                self._held = None
                await self._deliver(event, wait_for=None, done=None)

    async def _deliver(
        self, event: WebhookEvent, wait_for: asyncio.Event | None, done: asyncio.Event | None
    ) -> None:
        try:
            if wait_for is not None:
                await wait_for.wait()
            delay_ms = self._faults().webhook_delay_ms
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            copies = 2 if event.duplicate else 1
            for copy in range(1, copies + 1):
                delivered = await self._deliver_copy(event, copy, done if copy == 1 else None)
                if copy == 2 and delivered:
                    self.stats.duplicates_sent += 1
        finally:
            if done is not None:
                done.set()

    async def _deliver_copy(
        self, event: WebhookEvent, copy: int, done: asyncio.Event | None
    ) -> bool:
        timings = self._timings()
        for attempt in range(1, timings.webhook_max_attempts + 1):
            ok = await self._attempt(event, attempt, copy)
            if done is not None:
                done.set()
            if ok:
                self.stats.delivered += 1
                event.outcome = "delivered"
                return True
            if attempt < timings.webhook_max_attempts:
                backoff = min(
                    timings.webhook_backoff_seconds * 2 ** (attempt - 1),
                    timings.webhook_backoff_max_seconds,
                )
                await asyncio.sleep(backoff)
        self.stats.given_up += 1
        if event.outcome != "delivered":
            event.outcome = "failed"
        logger.warning("webhook event %s given up after %d tries", event.id, attempt)
        return False

    async def _attempt(self, event: WebhookEvent, attempt: int, copy: int) -> bool:
        settings = self._settings()
        url = settings.url
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        index = (copy - 1) * self._timings().webhook_max_attempts + attempt - 1
        dropped = event.drops[index] if index < len(event.drops) else False
        if url is None:
            error = "no webhook url configured"
        elif dropped:
            self.stats.dropped_attempts += 1
            error = "dropped by fault injection (never sent)"
        else:
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "X-Signature": sign(settings.secret, timestamp, event.body),
                "X-Signature-Timestamp": str(timestamp),
                "User-Agent": "rxroute-sandbox-webhooks/1",
            }
            try:
                response = await self._http().post(
                    url,
                    content=event.body,
                    headers=headers,
                    timeout=self._timings().webhook_timeout_seconds,
                )
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"non-2xx answer {status_code}"
            except httpx.TimeoutException:
                error = "no answer within timeout"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        ok = error is None
        if not ok:
            self.stats.failed_attempts += 1
        self.attempts.append(
            DeliveryAttempt(
                event_id=event.id,
                prescription_id=event.prescription_id,
                status=event.status,
                attempt=attempt,
                copy=copy,
                url=url,
                status_code=status_code,
                latency_ms=(time.monotonic() - started) * 1000,
                error=error,
                ok=ok,
                at=time.time(),
            )
        )
        return ok

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: a developer's proxy settings must not reroute local webhooks.
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._client

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, within_seconds: float) -> bool:
        """Wait for queued deliveries; tests use it instead of sleeping blindly."""
        deadline = time.monotonic() + within_seconds
        while self._tasks or self._held is not None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def cancel_all(self) -> None:
        self._held = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def clear(self) -> None:
        self.attempts.clear()
        self.events.clear()
        self.stats = DeliveryStats()

    async def aclose(self) -> None:
        await self.cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
