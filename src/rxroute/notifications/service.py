"""Patient notifications: which status moves email the patient, once, and the opt-out.

:func:`status_moved` is the hook :func:`rxroute.prescriptions.history.record_status` calls
right after the outbox, in the same transaction as the move: it writes one
``patient_notifications`` row and defers its job. Rolled back, there is neither row nor job;
committed, both are. The unique index (prescription, delivery, kind) makes a move that
happens again (a second failed series of the same delivery, a replayed fact) write nothing,
so the patient is not emailed twice. A patient who opted out gets a row marked ``skipped``
and no job, so support can see why no email went.

Like every service here, nothing in this module commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import (
    NotificationState,
    OutboxEvent,
    Patient,
    PatientNotification,
    Prescription,
    PrescriptionStatusEvent,
)
from rxroute.notifications.kinds import kind_for_event
from rxroute.notifications.tasks import OPTED_OUT, defer_stream
from rxroute.runtime import get_runtime


async def status_moved(
    session: AsyncSession,
    prescription: Prescription,
    *,
    event_id: uuid.UUID | None,
    delivery_id: uuid.UUID | None,
    status_event_seq: int | None,
    event_type: str | None = None,
) -> PatientNotification | None:
    """Record (and defer) the email announcing the outbox event ``event_id``, if any.

    Returns the new row, or None when the move is not news for the patient, notifications
    are off (``RXROUTE_PATIENT_NOTIFICATIONS``), or this email was already recorded.
    """
    if event_id is None or not get_runtime().settings.patient_notifications:
        return None
    if event_type is None:  # the caller did not say: read it back
        event_type = await session.scalar(
            select(OutboxEvent.type).where(OutboxEvent.id == event_id)
        )
    kind = kind_for_event(event_type)
    if kind is None:
        return None
    opted_out = await session.scalar(
        select(Patient.notifications_opt_out).where(Patient.id == prescription.patient_id)
    )
    notification_id = uuid.uuid4()
    state = NotificationState.SKIPPED if opted_out else NotificationState.PENDING
    inserted: PatientNotification | None = await session.scalar(
        insert(PatientNotification)
        .values(
            id=notification_id,
            prescription_id=prescription.id,
            patient_id=prescription.patient_id,
            delivery_id=delivery_id,
            kind=kind.value,
            status_event_seq=status_event_seq,
            state=state.value,
            skip_reason=OPTED_OUT if opted_out else None,
            attempts=0,
        )
        .on_conflict_do_nothing()
        .returning(PatientNotification)  # the row itself: no read back
    )
    if inserted is None:
        return None
    if state is NotificationState.PENDING:
        await defer_stream(session, prescription.id)
    return inserted


async def opt_out(session: AsyncSession, patient_id: uuid.UUID) -> bool:
    """Stop every further email to the patient; True if they were still opted in.

    Emails already waiting for their job are marked skipped too (the job also checks the
    flag before sending, for one already being sent right now).
    """
    patient = await session.get(Patient, patient_id, with_for_update=True)
    if patient is None:
        raise LookupError("no such patient")
    if patient.notifications_opt_out:
        return False
    patient.notifications_opt_out = True
    patient.notifications_opt_out_at = datetime.now(UTC)
    await session.execute(
        update(PatientNotification)
        .where(
            PatientNotification.patient_id == patient_id,
            PatientNotification.state == NotificationState.PENDING.value,
        )
        .values(state=NotificationState.SKIPPED.value, skip_reason=OPTED_OUT)
    )
    await session.flush()
    return True


async def of_prescription(
    session: AsyncSession, prescription_id: uuid.UUID, *, sent_only: bool = False
) -> list[PatientNotification]:
    """The prescription's patient emails, in the order they were recorded."""
    query = select(PatientNotification).where(
        PatientNotification.prescription_id == prescription_id
    )
    if sent_only:
        query = query.where(PatientNotification.state == NotificationState.SENT.value)
    return list(
        await session.scalars(
            query.order_by(
                PatientNotification.status_event_seq.nulls_last(), PatientNotification.created_at
            )
        )
    )


@dataclass(frozen=True)
class TimelineItem:
    """One line of a timeline: a status fact, or an email to the patient about one."""

    event: PrescriptionStatusEvent | None = None
    email: PatientNotification | None = None


def timeline(
    events: list[PrescriptionStatusEvent], emails: list[PatientNotification]
) -> list[TimelineItem]:
    """The history with each email placed right after the status line it announces.

    Emails whose line is not in ``events`` (none should be) come last.
    """
    by_seq: dict[int, list[PatientNotification]] = {}
    placed: set[uuid.UUID] = set()
    seqs = {event.seq for event in events}
    for email in emails:
        if email.status_event_seq in seqs:
            by_seq.setdefault(email.status_event_seq, []).append(email)
            placed.add(email.id)
    items: list[TimelineItem] = []
    for event in events:
        items.append(TimelineItem(event=event))
        items.extend(TimelineItem(email=email) for email in by_seq.get(event.seq, []))
    items.extend(TimelineItem(email=email) for email in emails if email.id not in placed)
    return items
