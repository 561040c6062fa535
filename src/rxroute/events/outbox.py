"""The outbox: an event for every change of a prescription's current status, written in the
transaction that changed it.

:func:`status_moved` is called by :func:`rxroute.prescriptions.history.record_status`, the
only writer of the status, right after it moves. It writes the event, one delivery per
endpoint that wants it, and defers each (endpoint, prescription) stream's job, all in the
caller's transaction: rolled back, nothing is sent; committed, it will be sent even if the
process dies the next instant (the job is committed with it, and the sweep finds any stream
whose job is lost).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import insert, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.events.catalogue import event_body, event_type_for
from rxroute.events.endpoints import candidate_endpoints, endpoints_for
from rxroute.events.tasks import defer_stream
from rxroute.models import (
    Delivery,
    EventDelivery,
    EventDeliveryState,
    OutboxEvent,
    Prescription,
    PrescriptionStatusEvent,
)
from rxroute.prescriptions.lifecycle import Status, derive_status
from rxroute.runtime import get_runtime


async def _opens_new_delivery(
    session: AsyncSession, delivery_id: uuid.UUID | None
) -> Delivery | None:
    """The delivery a ``queued`` opens when it replaces an earlier one (a re-route), else None.

    A delivery's first series is its opening; support's retry or a send again to the same
    pharmacy starts a later series of the same delivery, which is a plain ``queued``.
    """
    if delivery_id is None:
        return None
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None or delivery.number < 2 or delivery.series != 1:
        return None
    return delivery


async def _status_of_replaced(session: AsyncSession, delivery: Delivery) -> Status:
    """The status the prescription had before ``delivery`` replaced the one before it.

    Opening a delivery resets the cached status (the new delivery has no facts yet), so it
    is derived again from the replaced delivery's own history.
    """
    statuses = await session.scalars(
        select(PrescriptionStatusEvent.status)
        .join(Delivery, Delivery.id == PrescriptionStatusEvent.delivery_id)
        .where(
            Delivery.prescription_id == delivery.prescription_id,
            Delivery.number == delivery.number - 1,
        )
        .order_by(PrescriptionStatusEvent.seq)
    )
    return derive_status(Status(status) for status in statuses)


class Written(NamedTuple):
    """The outbox event a move wrote: its id, and its type (so the patient's email need not
    read the row back)."""

    id: uuid.UUID
    type: str


async def status_moved(
    session: AsyncSession,
    prescription: Prescription,
    previous: Status,
    status: Status,
    delivery_id: uuid.UUID | None,
    occurred_at: datetime | None,
) -> Written | None:
    """Write the event for a move from ``previous`` to ``status``; returns its id and type
    (None when the move is not an event, e.g. ``sending``). ``occurred_at`` None: now."""
    opened = await _opens_new_delivery(session, delivery_id) if status is Status.QUEUED else None
    event_type = event_type_for(status, rerouted=opened is not None)
    if event_type is None:
        return None
    if opened is not None:
        previous = await _status_of_replaced(session, opened)
    now = datetime.now(UTC)
    event_id = uuid.uuid4()
    body = event_body(
        event_type,
        created_at=now,
        prescription_id=prescription.id,
        external_id=prescription.external_id,
        status=status,
        previous_status=previous,
        occurred_at=occurred_at or now,
        region=prescription.region,
        pharmacy_id=prescription.pharmacy_id,
    )
    # One statement writes the event and reads the endpoints that may want it (a
    # data-modifying CTE runs exactly once; the outer join keeps its row with no endpoint).
    inserted = (
        insert(OutboxEvent)
        .values(
            id=event_id,
            prescription_id=prescription.id,
            type=event_type.value,
            status=status.value,
            previous_status=previous.value,
            body=body,
            occurred_at=occurred_at or now,
            created_at=now,
        )
        .returning(OutboxEvent.seq)
        .cte("inserted")
    )
    candidates = candidate_endpoints().subquery()
    rows = (
        await session.execute(
            select(
                inserted.c.seq,
                candidates.c.id,
                candidates.c.is_default,
                candidates.c.active,
                candidates.c.event_types,
            )
            .select_from(inserted)
            .outerjoin(candidates, true())
        )
    ).all()
    seq = rows[0].seq
    endpoints = await endpoints_for(
        session,
        get_runtime().settings,
        event_type.value,
        [(r.id, r.is_default, r.active, r.event_types) for r in rows if r.id is not None],
    )
    if not endpoints:
        return Written(event_id, event_type.value)
    await session.execute(
        insert(EventDelivery),
        [
            {
                "id": uuid.uuid4(),
                "event_id": event_id,
                "endpoint_id": endpoint_id,
                "prescription_id": prescription.id,
                "event_seq": seq,
                "state": EventDeliveryState.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for endpoint_id in endpoints
        ],
    )
    for endpoint_id in endpoints:
        await defer_stream(session, endpoint_id, prescription.id)
    return Written(event_id, event_type.value)
