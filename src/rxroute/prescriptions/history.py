"""Recording status changes: the only writer of a prescription's status.

Every change appends one row to ``prescription_status_events`` and, when the state machine
allows it, moves the cached ``prescriptions.status`` in the same transaction. The row lock on
the prescription serialises concurrent writers (a webhook and the send job, say), so the
cached status always equals :func:`rxroute.prescriptions.lifecycle.derive_status` over the
history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Prescription, PrescriptionStatusEvent
from rxroute.prescriptions.lifecycle import PROVIDER_STATUSES, Source, Status, decide


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


async def record_status(
    session: AsyncSession,
    prescription_id: uuid.UUID,
    status: Status,
    *,
    source: Source,
    occurred_at: datetime | None = None,
    provider_status: str | None = None,
    provider_event_id: str | None = None,
    actor: str | None = None,
    detail: str | None = None,
) -> Recorded:
    """Append ``status`` to the history and move the current status if allowed.

    A platform status already in the history is not recorded again (webhooks are delivered
    at least once; polls repeat what webhooks said). A command the state machine forbids
    raises :class:`~rxroute.prescriptions.lifecycle.InvalidTransition` and records nothing.
    """
    prescription = await lock_prescription(session, prescription_id)
    current = Status(prescription.status)
    if status in PROVIDER_STATUSES:
        already = await session.scalar(
            select(PrescriptionStatusEvent.id).where(
                PrescriptionStatusEvent.prescription_id == prescription_id,
                PrescriptionStatusEvent.status == status.value,
            )
        )
        if already is not None:
            return Recorded(appended=False, moved=False, status=current)
    moved = decide(current, status, source)
    session.add(
        PrescriptionStatusEvent(
            prescription_id=prescription_id,
            status=status.value,
            provider_status=provider_status,
            source=source.value,
            actor=actor,
            provider_event_id=provider_event_id,
            detail=detail,
            occurred_at=occurred_at or datetime.now(UTC),
        )
    )
    if moved:
        prescription.status = status.value
    await session.flush()
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
    and when. The line repeats the current status, which the fold ignores (no status has an
    edge to itself), so the derived status is unchanged. Platform statuses are recorded once
    each, so a note is refused while the prescription is in one.
    """
    prescription = await lock_prescription(session, prescription_id)
    current = Status(prescription.status)
    if current in PROVIDER_STATUSES:
        raise ValueError(f"cannot add a note while the prescription is {current.value}")
    session.add(
        PrescriptionStatusEvent(
            prescription_id=prescription_id,
            status=current.value,
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
