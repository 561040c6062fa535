"""Recording status facts: the only writer of a prescription's status.

Every fact appends one row to ``prescription_status_events``, attached to the delivery it is
about, and, when :func:`rxroute.prescriptions.lifecycle.decide` says so and the delivery is
the prescription's current one, moves the cached ``prescriptions.status`` in the same
transaction. The row lock on the prescription serialises concurrent writers (a webhook and
the send job, say). A far-side fact already recorded for the delivery is not recorded again:
the insert is ``ON CONFLICT DO NOTHING`` against the once-per-delivery unique index.
A move also writes, in the same transaction, the outbox event for the platform and the
email to the patient (:mod:`rxroute.events.outbox`, :mod:`rxroute.notifications.service`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.events import outbox
from rxroute.models import Prescription, PrescriptionStatusEvent
from rxroute.notifications import service as notifications
from rxroute.prescriptions.lifecycle import (
    FAR_SIDE_STATUSES,
    LOCAL_STATUSES,
    Source,
    Status,
    decide,
)


@dataclass(frozen=True)
class Recorded:
    """What recording did: ``appended`` to the history, and whether the status ``moved``."""

    appended: bool
    moved: bool
    status: Status


async def lock_prescription(session: AsyncSession, prescription_id: uuid.UUID) -> Prescription:
    """Load a prescription with a row lock held until the transaction ends."""
    result = await session.execute(
        select(Prescription)
        .where(Prescription.id == prescription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one()


#: The predicate of the once-per-delivery unique index (far-side facts), for ON CONFLICT.
ONCE_PER_DELIVERY_SQL = (
    "delivery_id IS NOT NULL AND status IN ("
    + ", ".join(f"'{s.value}'" for s in sorted(FAR_SIDE_STATUSES))
    + ")"
)
_ONCE_PER_DELIVERY = text(ONCE_PER_DELIVERY_SQL)


async def record_status(
    session: AsyncSession,
    prescription_id: uuid.UUID,
    status: Status,
    *,
    source: Source,
    delivery_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    provider_status: str | None = None,
    provider_event_id: str | None = None,
    actor: str | None = None,
    detail: str | None = None,
    prescription: Prescription | None = None,
) -> Recorded:
    """Append a fact about ``delivery_id`` (default: the current delivery) and move the status.

    A far-side fact already in the delivery's history is not recorded again (webhooks are
    delivered at least once; polls repeat what webhooks said). A local fact from our own
    worker that no longer applies is dropped. A command the lifecycle forbids raises
    :class:`~rxroute.prescriptions.lifecycle.InvalidTransition` and records nothing.
    ``prescription``: the caller's already locked row, to save a round trip.
    """
    locked = prescription or await lock_prescription(session, prescription_id)
    current_delivery = locked.current_delivery_id
    about = delivery_id if delivery_id is not None else current_delivery
    is_current = about == current_delivery
    current = Status(locked.status)
    moved = decide(current, status, source) if is_current else False
    if not moved and status in LOCAL_STATUSES:
        return Recorded(appended=False, moved=False, status=current)
    values = {
        "id": uuid.uuid4(),
        "prescription_id": prescription_id,
        "delivery_id": about,
        "status": status.value,
        "provider_status": provider_status,
        "source": source.value,
        "actor": actor,
        "provider_event_id": provider_event_id,
        "detail": detail,
        "occurred_at": occurred_at or datetime.now(UTC),
    }
    statement = insert(PrescriptionStatusEvent).values(**values)
    if status in FAR_SIDE_STATUSES and about is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=["delivery_id", "status"], index_where=_ONCE_PER_DELIVERY
        )
    result = await session.execute(statement.returning(PrescriptionStatusEvent.seq))
    row = result.first()
    if row is None:
        return Recorded(appended=False, moved=False, status=current)
    if moved:
        locked.status = status.value
        await session.flush()
        written = await outbox.status_moved(session, locked, current, status, about, occurred_at)
        await notifications.status_moved(
            session,
            locked,
            event_id=written.id if written else None,
            event_type=written.type if written else None,
            delivery_id=about,
            status_event_seq=row.seq,
        )
    return Recorded(appended=True, moved=moved, status=status if moved else current)


async def record_note(
    session: AsyncSession,
    prescription_id: uuid.UUID,
    *,
    source: Source,
    actor: str | None,
    detail: str,
) -> None:
    """A history line that moves nothing: an action that is not a status change.

    Support resending a Region A email changes no status, yet support must see who did it
    and when. The line repeats the current status and belongs to no delivery, so neither the
    derived status nor the once-per-delivery facts are touched.
    """
    prescription = await lock_prescription(session, prescription_id)
    session.add(
        PrescriptionStatusEvent(
            prescription_id=prescription_id,
            delivery_id=None,
            status=prescription.status,
            source=source.value,
            actor=actor,
            detail=detail,
            occurred_at=datetime.now(UTC),
        )
    )
    await session.flush()


async def history(
    session: AsyncSession, prescription_id: uuid.UUID
) -> list[PrescriptionStatusEvent]:
    result = await session.scalars(
        select(PrescriptionStatusEvent)
        .where(PrescriptionStatusEvent.prescription_id == prescription_id)
        .order_by(PrescriptionStatusEvent.seq)
    )
    return list(result)
