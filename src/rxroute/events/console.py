"""What the support console and the admin pages show about events out, and support's resend.

Support sees, per endpoint, which events are still on their way (and why not yet) and the
latest ones delivered, with attempts and the last error; never an event's body (it holds
no PHI, but there is nothing in it support needs beyond the type and the prescription).
Services add and flush; the request commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.events.delivery import FLAG_AFTER, max_attempts
from rxroute.events.endpoints import display_url
from rxroute.events.tasks import bring_forward, defer_stream
from rxroute.models import EventDelivery, EventDeliveryState, EventEndpoint, OutboxEvent, User
from rxroute.prescriptions.errors import Conflict, NotFound

log = structlog.get_logger(__name__)

UNDELIVERED_LIMIT = 100
RECENT_LIMIT = 50


@dataclass(frozen=True)
class EndpointSummary:
    endpoint: EventEndpoint
    url: str
    #: Whether it can receive events now (the default one needs RXROUTE_EVENTS_URL).
    configured: bool
    pending: int
    failing: int
    gave_up: int
    #: All its attempts have failed for over :data:`FLAG_AFTER`.
    flagged: bool


def is_flagged(endpoint: EventEndpoint, now: datetime) -> bool:
    return endpoint.failing_since is not None and now - endpoint.failing_since > FLAG_AFTER


async def endpoint_summaries(session: AsyncSession, settings: Settings) -> list[EndpointSummary]:
    """Every endpoint with its undelivered counts, the default one first."""
    endpoints = list(
        await session.scalars(
            select(EventEndpoint).order_by(
                EventEndpoint.is_default.desc(), EventEndpoint.created_at, EventEndpoint.id
            )
        )
    )
    failing = EventDelivery.state == EventDeliveryState.FAILING.value
    counts = {
        row.endpoint_id: row
        for row in (
            await session.execute(
                select(
                    EventDelivery.endpoint_id,
                    func.count()
                    .filter(EventDelivery.state == EventDeliveryState.PENDING.value)
                    .label("pending"),
                    func.count()
                    .filter(failing, EventDelivery.next_attempt_at.is_not(None))
                    .label("failing"),
                    func.count()
                    .filter(failing, EventDelivery.next_attempt_at.is_(None))
                    .label("gave_up"),
                )
                .where(EventDelivery.state != EventDeliveryState.DELIVERED.value)
                .group_by(EventDelivery.endpoint_id)
            )
        ).all()
    }
    now = datetime.now(UTC)
    summaries = []
    for endpoint in endpoints:
        row = counts.get(endpoint.id)
        summaries.append(
            EndpointSummary(
                endpoint=endpoint,
                url=display_url(endpoint, settings),
                configured=not endpoint.is_default or bool(settings.events_url),
                pending=row.pending if row else 0,
                failing=row.failing if row else 0,
                gave_up=row.gave_up if row else 0,
                flagged=is_flagged(endpoint, now),
            )
        )
    return summaries


@dataclass(frozen=True)
class LogLine:
    delivery: EventDelivery
    event_type: str
    occurred_at: datetime
    resent_by: str | None


@dataclass
class EndpointLog:
    summary: EndpointSummary
    max_attempts: int
    undelivered: list[LogLine] = field(default_factory=list)
    recent: list[LogLine] = field(default_factory=list)


async def _lines(
    session: AsyncSession, statement: Select[EventDelivery, str, datetime, str]
) -> list[LogLine]:
    rows = (await session.execute(statement)).all()
    return [
        LogLine(delivery=delivery, event_type=event_type, occurred_at=occurred, resent_by=email)
        for delivery, event_type, occurred, email in rows
    ]


async def endpoint_log(
    session: AsyncSession, settings: Settings, endpoint_id: uuid.UUID
) -> EndpointLog:
    summary = next(
        (s for s in await endpoint_summaries(session, settings) if s.endpoint.id == endpoint_id),
        None,
    )
    if summary is None:
        raise NotFound("event endpoint not found")
    base = (
        select(EventDelivery, OutboxEvent.type, OutboxEvent.occurred_at, User.email)
        .join(OutboxEvent, OutboxEvent.id == EventDelivery.event_id)
        .outerjoin(User, User.id == EventDelivery.resend_requested_by)
        .where(EventDelivery.endpoint_id == endpoint_id)
    )
    delivered = EventDelivery.state == EventDeliveryState.DELIVERED.value
    undelivered = await _lines(
        session,
        base.where(~delivered)
        # Given up first (they hold their streams back), then the oldest.
        .order_by(
            case((EventDelivery.next_attempt_at.is_(None), 0), else_=1), EventDelivery.event_seq
        )
        .limit(UNDELIVERED_LIMIT),
    )
    recent = await _lines(
        session,
        base.where(delivered)
        .order_by(EventDelivery.delivered_at.desc(), EventDelivery.event_seq.desc())
        .limit(RECENT_LIMIT),
    )
    return EndpointLog(summary, max_attempts(settings), undelivered, recent)


async def request_resend(
    session: AsyncSession, settings: Settings, user: User, delivery_id: uuid.UUID
) -> EventDelivery:
    """Send an event to its endpoint again (now, then on the usual schedule), recording who
    asked and when. Refused (409) while the endpoint cannot receive anything.

    A delivered event goes again too (receivers drop repeats by ``webhook-id``); an undelivered
    one starts a fresh run of attempts. Order still holds: it goes when everything before it
    in its stream has gone.
    """
    delivery = await session.get(
        EventDelivery, delivery_id, with_for_update=True, populate_existing=True
    )
    if delivery is None:
        raise NotFound("event delivery not found")
    endpoint = await session.get(EventEndpoint, delivery.endpoint_id)
    assert endpoint is not None
    if not endpoint.active:
        raise Conflict("this endpoint is disabled; an admin must enable it before anything is sent")
    if endpoint.is_default and not settings.events_url:
        raise Conflict("RXROUTE_EVENTS_URL is not set, so the default endpoint receives nothing")
    now = datetime.now(UTC)
    previous_state = delivery.state
    delivery.state = EventDeliveryState.PENDING.value
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.delivered_at = None
    delivery.resend_count += 1
    delivery.resend_requested_by = user.id
    delivery.resend_requested_at = now
    await session.flush()
    # Bring forward a retry job waiting for this stream (jobs of a stream start in the order
    # they were deferred), and add one of our own: a job starting right now could read the
    # stream before this commits.
    await bring_forward(session, delivery.endpoint_id, delivery.prescription_id, at=now)
    await defer_stream(session, delivery.endpoint_id, delivery.prescription_id)
    log.info(
        "event_resend_requested",
        delivery_id=str(delivery.id),
        endpoint_id=str(delivery.endpoint_id),
        actor=str(user.id),
        previous_state=previous_state,
        resend_count=delivery.resend_count,
    )
    return delivery
