"""Sending one event to one endpoint: the retry schedule, the signature, the HTTP call, and
what is recorded afterwards.

Signed per Standard Webhooks with the maintained ``standardwebhooks`` package: headers
``webhook-id`` (the event's id, the same on every attempt), ``webhook-timestamp`` (this
attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``. Any 2xx
answer delivers it; anything else (another status, a timeout, a refused connection) is a
failed attempt, retried after ``RXROUTE_EVENTS_RETRY_SECONDS``, doubling, each wait at most
12 hours, for about three days. No transaction is open during the HTTP call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from rxroute import __version__
from rxroute.config import Settings
from rxroute.crypto import SecretBox
from rxroute.events.endpoints import TargetUnavailable, target_for
from rxroute.models import EventDelivery, EventDeliveryState, EventEndpoint, OutboxEvent
from rxroute.observability.metrics import EVENT_DELIVERIES

log = structlog.get_logger(__name__)

#: Retries stop once their waits add up to this.
RETRY_HORIZON = timedelta(days=3)
#: The longest single wait between two attempts.
MAX_RETRY_WAIT = timedelta(hours=12)
#: One attempt's whole HTTP exchange.
REQUEST_TIMEOUT_SECONDS = 10.0
#: An endpoint whose attempts have all failed for this long is flagged on the pages.
FLAG_AFTER = timedelta(hours=1)
#: A retry this close to due is sent now rather than put off (clocks and queues are not
#: exact to the millisecond).
DUE_SLACK = timedelta(seconds=1)


@lru_cache(maxsize=8)
def retry_waits(first_seconds: float) -> tuple[float, ...]:
    """Seconds to wait after each failed attempt: doubling from ``first_seconds``, each at
    most :data:`MAX_RETRY_WAIT`, the last one cut so they add up to :data:`RETRY_HORIZON`."""
    horizon = RETRY_HORIZON.total_seconds()
    cap = MAX_RETRY_WAIT.total_seconds()
    waits: list[float] = []
    total, wait = 0.0, first_seconds
    while total < horizon:
        step = min(wait, cap, horizon - total)
        waits.append(step)
        total += step
        wait *= 2
    return tuple(waits)


def wait_after(settings: Settings, failed_attempts: int) -> float | None:
    """Seconds before the next attempt after ``failed_attempts`` failures; None: give up."""
    waits = retry_waits(settings.events_retry_seconds)
    return waits[failed_attempts - 1] if failed_attempts <= len(waits) else None


def max_attempts(settings: Settings) -> int:
    return len(retry_waits(settings.events_retry_seconds)) + 1


def signed_headers(secret: str, message_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt sent at ``at``."""
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": f"rxroute/{__version__}",
    }


@dataclass(frozen=True)
class Outgoing:
    """The next attempt of a stream, read in one short transaction."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    message_id: str
    body: str
    url: str | None
    secret: str | None
    #: Why it cannot be sent at all this time (counted as a failed attempt).
    refusal: str | None = None


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    #: PHI-free: an HTTP status or an exception class, never the response body.
    error: str | None = None


@dataclass(frozen=True)
class Waiting:
    """The stream's next delivery is not due until ``at``."""

    at: datetime


async def next_outgoing(
    session: AsyncSession,
    settings: Settings,
    box: SecretBox,
    endpoint_id: uuid.UUID,
    prescription_id: uuid.UUID,
    now: datetime,
) -> Outgoing | Waiting | None:
    """The stream's oldest undelivered event, if it may be sent now.

    None when there is nothing to send: all delivered, the endpoint disabled (or the default
    one without a URL), or the oldest one given up (it waits for support's resend; nothing
    after it may overtake it).
    """
    endpoint = await session.get(EventEndpoint, endpoint_id, populate_existing=True)
    if endpoint is None or not endpoint.active:
        return None
    head = await session.scalar(
        select(EventDelivery)
        .where(
            EventDelivery.endpoint_id == endpoint_id,
            EventDelivery.prescription_id == prescription_id,
            EventDelivery.state != EventDeliveryState.DELIVERED.value,
        )
        .order_by(EventDelivery.event_seq)
        .limit(1)
        .execution_options(populate_existing=True)
    )
    if head is None or head.gave_up:
        return None
    if head.next_attempt_at is not None and head.next_attempt_at > now + DUE_SLACK:
        return Waiting(head.next_attempt_at)
    event = await session.get(OutboxEvent, head.event_id)
    assert event is not None  # the delivery's foreign key cascades from its event
    try:
        target = target_for(endpoint, settings, box)
    except TargetUnavailable as exc:
        return Outgoing(head.id, endpoint_id, event.message_id, event.body, None, None, str(exc))
    if target is None:
        return None
    return Outgoing(head.id, endpoint_id, event.message_id, event.body, target.url, target.secret)


async def send(client: httpx.AsyncClient, outgoing: Outgoing) -> Outcome:
    """One attempt: POST the body, signed now. Never raises for the endpoint's faults."""
    if outgoing.refusal is not None or outgoing.url is None or outgoing.secret is None:
        return Outcome(False, error=outgoing.refusal or "the endpoint has no URL")
    headers = signed_headers(outgoing.secret, outgoing.message_id, outgoing.body, datetime.now(UTC))
    try:
        response = await client.post(outgoing.url, content=outgoing.body.encode(), headers=headers)
    except httpx.TimeoutException:
        return Outcome(False, error=f"no answer within {REQUEST_TIMEOUT_SECONDS:g} s")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return Outcome(False, error=f"could not connect ({type(exc).__name__})")
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code)
    return Outcome(False, response.status_code, f"HTTP {response.status_code}")


async def record_outcome(
    session: AsyncSession, settings: Settings, outgoing: Outgoing, outcome: Outcome
) -> datetime | None:
    """Record an attempt; returns when the next one is due after a failure (None if given
    up or delivered). Keeps the endpoint's ``failing_since`` in step."""
    now = datetime.now(UTC)
    delivery = await session.get(
        EventDelivery, outgoing.delivery_id, with_for_update=True, populate_existing=True
    )
    if delivery is None:  # purged meanwhile: nothing left to record
        return None
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status_code = outcome.status_code
    EVENT_DELIVERIES.labels(outcome="delivered" if outcome.delivered else "failed").inc()
    endpoint_row = update(EventEndpoint).where(EventEndpoint.id == outgoing.endpoint_id)
    if outcome.delivered:
        delivery.state = EventDeliveryState.DELIVERED.value
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        delivery.last_error = None
        await session.execute(
            endpoint_row.where(EventEndpoint.failing_since.is_not(None)).values(failing_since=None)
        )
        await session.flush()
        return None
    delivery.state = EventDeliveryState.FAILING.value
    delivery.last_error = (outcome.error or "failed")[:500]
    wait = wait_after(settings, delivery.attempts)
    delivery.next_attempt_at = now + timedelta(seconds=wait) if wait is not None else None
    await session.execute(
        endpoint_row.where(EventEndpoint.failing_since.is_(None)).values(failing_since=now)
    )
    await session.flush()
    log.warning(
        "event_delivery_failed" if wait is not None else "event_delivery_gave_up",
        delivery_id=str(delivery.id),
        endpoint_id=str(outgoing.endpoint_id),
        attempts=delivery.attempts,
        error=delivery.last_error,
        retry_in_seconds=wait,
    )
    return delivery.next_attempt_at
