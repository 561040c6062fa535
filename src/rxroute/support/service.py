"""What the support console reads and does. Services add and flush; the caller commits.

Support sees a prescription's routing, timeline, webhook events and delivery attempts, and
of the patient only what it needs to get in touch: name and email (no date of birth, no
address). Raw webhook payloads are never shown: they may carry patient details.

Webhook problems (failed processing, pending too long, events rxroute could not apply) have
their own list; the rules for them live in :mod:`rxroute.webhooks.dead_letters`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.deliveries import commands, ledger
from rxroute.models import (
    Delivery,
    DeliveryAttempt,
    InboundWebhookEvent,
    Patient,
    PatientNotification,
    Pharmacy,
    Prescription,
    PrescriptionStatusEvent,
    User,
    WebhookEventState,
)
from rxroute.notifications import service as notifications
from rxroute.prescriptions.errors import Conflict, NotFound
from rxroute.prescriptions.history import history, lock_prescription, record_note
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.prescriptions.tasks import defer_send
from rxroute.webhooks import dead_letters

log = structlog.get_logger(__name__)

#: Queued or sending for longer than this without a status change is "stuck".
STUCK_AFTER = timedelta(minutes=10)
#: Verified events rxroute could not apply (kept, never dropped); failed ones are listed
#: apart, as dead letters.
FLAGGED_EVENT_STATES = (
    WebhookEventState.UNKNOWN_PRESCRIPTION.value,
    WebhookEventState.UNKNOWN_TYPE.value,
)
MAX_QUERY_LENGTH = 320
PROBLEM_LIMIT = 50
SEARCH_LIMIT = 50

_PLATFORM_ID = re.compile(r"^SRX[A-Z0-9]{1,61}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True)
class SearchResult:
    query: str
    #: uuid, platform_id, email, or "" when the query was not understood.
    kind: str
    prescriptions: list[Prescription] = field(default_factory=list)
    message: str = ""


def classify_query(raw: str) -> tuple[str, str]:
    """(kind, normalised value) of a support search query."""
    query = "".join(ch for ch in raw if ch.isprintable()).strip()[:MAX_QUERY_LENGTH]
    if not query:
        return "", ""
    try:
        return "uuid", str(uuid.UUID(query))
    except ValueError:
        pass
    if _PLATFORM_ID.match(query.upper()):
        return "platform_id", query.upper()
    if _EMAIL.match(query):
        return "email", query.lower()
    return "unknown", query


async def search(session: AsyncSession, raw: str) -> SearchResult:
    kind, value = classify_query(raw)
    base = select(Prescription).options(
        selectinload(Prescription.patient), selectinload(Prescription.pharmacy)
    )
    if kind == "":
        return SearchResult(query="", kind="", message="")
    if kind == "uuid":
        statement = base.where(Prescription.id == uuid.UUID(value))
    elif kind == "platform_id":
        statement = base.where(Prescription.provider_prescription_id == value)
    elif kind == "email":
        statement = (
            base.join(Patient, Patient.id == Prescription.patient_id)
            .where(func.lower(Patient.email) == value)
            .order_by(Prescription.created_at.desc())
        )
    else:
        return SearchResult(
            query=value,
            kind="unknown",
            message=(
                "Search by rxroute's prescription ID (a UUID), the platform's ID (SRX...) "
                "or the patient's email address."
            ),
        )
    found = list(await session.scalars(statement.limit(SEARCH_LIMIT)))
    message = "" if found else "No prescription matches."
    return SearchResult(query=value, kind=kind, prescriptions=found, message=message)


@dataclass(frozen=True)
class StuckPrescription:
    prescription: Prescription
    since: datetime


@dataclass(frozen=True)
class WebhookProblemCounts:
    failed: int
    stale: int
    flagged: int

    @property
    def total(self) -> int:
        return self.failed + self.stale + self.flagged


@dataclass(frozen=True)
class Problems:
    failed: list[Prescription]
    stuck: list[StuckPrescription]
    webhooks: WebhookProblemCounts


async def recent_problems(session: AsyncSession, now: datetime | None = None) -> Problems:
    moment = now or datetime.now(UTC)
    failed = list(
        await session.scalars(
            select(Prescription)
            .options(selectinload(Prescription.pharmacy))
            .where(Prescription.status == Status.FAILED.value)
            .order_by(Prescription.updated_at.desc())
            .limit(PROBLEM_LIMIT)
        )
    )
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
    stuck = [StuckPrescription(prescription=row[0], since=row[1]) for row in rows]
    return Problems(failed=failed, stuck=stuck, webhooks=await webhook_problem_counts(session))


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


@dataclass(frozen=True)
class WebhookProblems:
    """The "Webhook problems" list: newest first, each part capped at PROBLEM_LIMIT."""

    failed: list[InboundWebhookEvent]
    stale: list[InboundWebhookEvent]
    flagged: list[InboundWebhookEvent]
    #: Event id -> the prescription it is about, where one is known.
    prescriptions: dict[uuid.UUID, uuid.UUID]


async def webhook_problems(session: AsyncSession) -> WebhookProblems:
    now = await dead_letters.database_now(session)

    async def listed(
        condition: ColumnElement[bool], order: ColumnElement[Any]
    ) -> list[InboundWebhookEvent]:
        return list(
            await session.scalars(
                select(InboundWebhookEvent).where(condition).order_by(order).limit(PROBLEM_LIMIT)
            )
        )

    failed = await listed(
        InboundWebhookEvent.state == WebhookEventState.FAILED.value,
        InboundWebhookEvent.failed_at.desc().nulls_last(),
    )
    stale = await listed(dead_letters.stale_clause(now), InboundWebhookEvent.pending_since.asc())
    flagged = await listed(
        InboundWebhookEvent.state.in_(FLAGGED_EVENT_STATES), InboundWebhookEvent.received_at.desc()
    )
    links = await dead_letters.linked_prescriptions(session, [*failed, *stale, *flagged])
    return WebhookProblems(failed=failed, stale=stale, flagged=flagged, prescriptions=links)


@dataclass(frozen=True)
class PrescriptionView:
    prescription: Prescription
    history: list[PrescriptionStatusEvent]
    events: list[InboundWebhookEvent]
    attempts: list[DeliveryAttempt]
    #: Every attempt to get it to a pharmacy, oldest first, with its state.
    deliveries: list[Delivery]
    #: Pharmacy names by id, for the deliveries table.
    pharmacy_names: dict[str, str]
    #: User ids in the history, mapped to the email of who it was (staff and patients).
    actors: dict[str, str]
    #: The database's clock when the page was read, for the webhook events' rules.
    now: datetime
    #: Status emails to the patient (sent, waiting, skipped or failed): what and when, never
    #: their text.
    emails: list[PatientNotification] = field(default_factory=list)

    @property
    def timeline(self) -> list[notifications.TimelineItem]:
        """The history with each patient email right after the status line it announces."""
        return notifications.timeline(self.history, self.emails)

    def event_is_stale(self, event: InboundWebhookEvent) -> bool:
        return dead_letters.is_stale(event, self.now)

    def can_reprocess(self, event: InboundWebhookEvent) -> bool:
        return dead_letters.reprocess_refusal(event, self.now) is None

    @property
    def can_retry(self) -> bool:
        return self.prescription.status == Status.FAILED.value

    @property
    def can_resend_email(self) -> bool:
        return (
            self.prescription.channel == "email"
            and self.prescription.status == Status.EMAILED.value
        )

    @property
    def can_void(self) -> bool:
        return not Status(self.prescription.status).is_final


async def prescription_view(session: AsyncSession, prescription_id: uuid.UUID) -> PrescriptionView:
    prescription = await session.scalar(
        select(Prescription)
        .where(Prescription.id == prescription_id)
        .options(
            selectinload(Prescription.patient),
            selectinload(Prescription.pharmacy),
            selectinload(Prescription.prescriber),
            selectinload(Prescription.items),
        )
        .execution_options(populate_existing=True)
    )
    if prescription is None:
        raise NotFound("prescription not found")
    events = await history(session, prescription_id)
    webhook_events = await dead_letters.events_about(
        session, prescription_id, prescription.provider_prescription_id
    )
    attempts = list(
        await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.prescription_id == prescription_id)
            .order_by(DeliveryAttempt.started_at, DeliveryAttempt.finished_at)
        )
    )
    deliveries = await ledger.deliveries_of(session, prescription_id)
    pharmacy_names: dict[str, str] = {}
    if deliveries:
        for pharmacy_id, name in await session.execute(
            select(Pharmacy.id, Pharmacy.name).where(
                Pharmacy.id.in_({d.pharmacy_id for d in deliveries})
            )
        ):
            pharmacy_names[str(pharmacy_id)] = name
    actor_ids: set[uuid.UUID] = set()
    for actor in [event.actor for event in events] + [d.actor for d in deliveries]:
        if actor:
            try:
                actor_ids.add(uuid.UUID(actor))
            except ValueError:
                continue
    actor_ids.update(e.reprocess_requested_by for e in webhook_events if e.reprocess_requested_by)
    actors: dict[str, str] = {}
    if actor_ids:
        for user_id, email in await session.execute(
            select(User.id, User.email).where(User.id.in_(actor_ids))
        ):
            actors[str(user_id)] = email
    return PrescriptionView(
        prescription=prescription,
        history=events,
        events=webhook_events,
        attempts=attempts,
        deliveries=deliveries,
        pharmacy_names=pharmacy_names,
        actors=actors,
        now=await dead_letters.database_now(session),
        emails=await notifications.of_prescription(session, prescription_id),
    )


async def retry_failed_send(
    session: AsyncSession, user: User, prescription_id: uuid.UUID, *, reason: str | None = None
) -> Prescription:
    """Queue a failed delivery again (a fresh series), and its send job, in one transaction."""
    prescription = await commands.retry(session, user, prescription_id, reason=reason)
    await defer_send(session, prescription_id)
    return prescription


async def request_email_resend(
    session: AsyncSession, user: User, prescription_id: uuid.UUID
) -> DeliveryAttempt:
    """Record the request and defer the resend job (same transaction).

    The request goes into the history as a note (who asked, when; the status does not
    move) and as a ``resend`` delivery attempt (outcome ``requested``) on the live delivery;
    the job records its own ``resend`` attempt with how it went.
    """
    from rxroute.support.tasks import defer_resend

    found = await session.get(Prescription, prescription_id)
    if found is None:
        raise NotFound("prescription not found")
    prescription = await lock_prescription(session, prescription_id)
    current = Status(prescription.status)
    if prescription.channel != "email":
        raise Conflict("only a Region A (email) prescription can have its email resent")
    delivery = await ledger.current_delivery(session, prescription)
    if current is not Status.EMAILED or delivery is None or not delivery.is_open:
        raise Conflict(
            f"the email can be resent only while the prescription is emailed; it is "
            f"{current.value} ({current.label.lower()})"
        )
    attempt = ledger.attempt_row(
        delivery,
        "resend",
        "requested",
        datetime.now(UTC),
        f"resend requested by support user {user.id}",
        attempt=0,
    )
    session.add(attempt)
    await record_note(
        session,
        prescription_id,
        source=Source.SUPPORT,
        actor=str(user.id),
        detail="email resent to the pharmacy by support (marked as a copy)",
    )
    await defer_resend(session, prescription_id, requested_by=str(user.id))
    log.info("support_resend_email", prescription_id=str(prescription_id), actor=str(user.id))
    return attempt
