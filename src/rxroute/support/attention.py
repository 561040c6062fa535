"""The support console's "needs attention" list: what someone should look at today.

* failed sends (the send gave up; retry or re-route);
* stuck: queued or sending for longer than :data:`STUCK_AFTER` without a status change (the
  worker should have finished or failed it long ago);
* dead-lettered webhook events (processing failed on every attempt), with the counts of
  those pending too long and those rxroute could not apply (rules in
  :mod:`rxroute.webhooks.dead_letters`);
* expiring soon: at a pharmacy (issued, signed, printed, emailed) but not dispensed, first
  sent more than the validity window (``RXROUTE_PHARMACY_LINK_TTL_HOURS``, 28 days by
  default: the pharmacy's link stops working then, and the platform expires an uncollected
  prescription after the same time) less :data:`EXPIRY_WARNING` ago.

Each part reads an index (``tests/db/test_query_plans.py``) and is capped at
:data:`PROBLEM_LIMIT` rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.config import Settings
from rxroute.models import (
    InboundWebhookEvent,
    Prescription,
    PrescriptionStatusEvent,
    WebhookEventState,
)
from rxroute.prescriptions.lifecycle import Status
from rxroute.support.service import FLAGGED_EVENT_STATES, PROBLEM_LIMIT
from rxroute.webhooks import dead_letters

#: Queued or sending for longer than this without a status change is "stuck".
STUCK_AFTER = timedelta(minutes=10)
#: How long before it expires a prescription at a pharmacy is listed.
EXPIRY_WARNING = timedelta(days=3)
#: At a pharmacy and not dispensed yet: the statuses the partial index
#: ``ix_prescriptions_at_pharmacy_queued`` covers (change both together).
AT_PHARMACY = (Status.ISSUED, Status.SIGNED, Status.PRINTED, Status.EMAILED)
#: Dead-lettered events listed on the console (the full list is on the webhooks page).
DEAD_LETTERS_SHOWN = 10


@dataclass(frozen=True)
class StuckPrescription:
    prescription: Prescription
    since: datetime


@dataclass(frozen=True)
class ExpiringPrescription:
    prescription: Prescription
    expires_at: datetime


@dataclass(frozen=True)
class WebhookProblemCounts:
    failed: int
    stale: int
    flagged: int

    @property
    def total(self) -> int:
        return self.failed + self.stale + self.flagged


@dataclass(frozen=True)
class Attention:
    failed: list[Prescription]
    stuck: list[StuckPrescription]
    expiring: list[ExpiringPrescription]
    webhooks: WebhookProblemCounts
    dead_letters: list[InboundWebhookEvent]
    #: Dead-lettered event id -> the prescription it is about, where one is known.
    dead_letter_prescriptions: dict[uuid.UUID, uuid.UUID]

    @property
    def total(self) -> int:
        return len(self.failed) + len(self.stuck) + len(self.expiring) + self.webhooks.failed


def validity(settings: Settings) -> timedelta:
    return timedelta(hours=settings.pharmacy_link_ttl_hours)


async def failed_sends(session: AsyncSession) -> list[Prescription]:
    return list(
        await session.scalars(
            select(Prescription)
            .options(selectinload(Prescription.pharmacy))
            .where(Prescription.status == Status.FAILED.value)
            .order_by(Prescription.updated_at.desc())
            .limit(PROBLEM_LIMIT)
        )
    )


async def stuck_sends(session: AsyncSession, moment: datetime) -> list[StuckPrescription]:
    # The latest line of the history (by seq: the order it was recorded in), one read of
    # ix_prescription_status_events_prescription_seq per queued or sending prescription,
    # computed once each (a materialised CTE: inline, PostgreSQL would run it for the filter
    # and again for the sort).
    last_change = (
        select(PrescriptionStatusEvent.recorded_at)
        .where(PrescriptionStatusEvent.prescription_id == Prescription.id)
        .order_by(PrescriptionStatusEvent.seq.desc())
        .limit(1)
        .correlate(Prescription)
        .scalar_subquery()
    )
    waiting = (
        select(Prescription.id, func.coalesce(last_change, Prescription.updated_at).label("since"))
        .where(Prescription.status.in_([Status.QUEUED.value, Status.SENDING.value]))
        .cte("waiting")
        .prefix_with("MATERIALIZED")
    )
    rows = await session.execute(
        select(Prescription, waiting.c.since)
        .join(waiting, waiting.c.id == Prescription.id)
        .options(selectinload(Prescription.pharmacy))
        .where(waiting.c.since < moment - STUCK_AFTER)
        .order_by(waiting.c.since)
        .limit(PROBLEM_LIMIT)
    )
    return [StuckPrescription(prescription=row[0], since=row[1]) for row in rows]


async def expiring_soon(
    session: AsyncSession, settings: Settings, moment: datetime
) -> list[ExpiringPrescription]:
    """At a pharmacy, undispensed, expiring within :data:`EXPIRY_WARNING` (or past it)."""
    window = validity(settings)
    rows = await session.scalars(
        select(Prescription)
        .options(selectinload(Prescription.pharmacy))
        .where(
            Prescription.status.in_([s.value for s in AT_PHARMACY]),
            Prescription.first_queued_at < moment - window + EXPIRY_WARNING,
        )
        .order_by(Prescription.first_queued_at)
        .limit(PROBLEM_LIMIT)
    )
    return [
        ExpiringPrescription(prescription=p, expires_at=p.first_queued_at + window)
        for p in rows
        if p.first_queued_at is not None
    ]


async def webhook_problem_counts(session: AsyncSession) -> WebhookProblemCounts:
    now = await dead_letters.database_now(session)
    state = InboundWebhookEvent.state
    row = (
        await session.execute(
            select(
                func.count().filter(state == WebhookEventState.FAILED.value),
                func.count().filter(dead_letters.stale_clause(now)),
                func.count().filter(state.in_(FLAGGED_EVENT_STATES)),
            ).where(state.in_(dead_letters.UNRESOLVED_STATES))
        )
    ).one()
    return WebhookProblemCounts(failed=row[0], stale=row[1], flagged=row[2])


async def needs_attention(
    session: AsyncSession, settings: Settings, now: datetime | None = None
) -> Attention:
    moment = now or datetime.now(UTC)
    letters = list(
        await session.scalars(
            select(InboundWebhookEvent)
            .where(InboundWebhookEvent.state == WebhookEventState.FAILED.value)
            .order_by(InboundWebhookEvent.failed_at.desc().nulls_last())
            .limit(DEAD_LETTERS_SHOWN)
        )
    )
    return Attention(
        failed=await failed_sends(session),
        stuck=await stuck_sends(session, moment),
        expiring=await expiring_soon(session, settings, moment),
        webhooks=await webhook_problem_counts(session),
        dead_letters=letters,
        dead_letter_prescriptions=await dead_letters.linked_prescriptions(session, letters),
    )
