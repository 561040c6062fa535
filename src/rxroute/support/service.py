"""What the support console reads and does. Services add and flush; the caller commits.

Support sees a prescription's routing, medicines, timeline, notes, webhook events and
delivery attempts, and of the patient what it needs to find and reach them: name, date of
birth (to tell two patients of one name apart), email and phone (no address). Raw webhook
payloads are never shown: they may carry patient details. Who did each thing is shown by
name (:mod:`rxroute.support.actors`), never as a bare id.

Webhook problems (failed processing, pending too long, events rxroute could not apply) have
their own list; the rules for them live in :mod:`rxroute.webhooks.dead_letters`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.deliveries import commands, ledger
from rxroute.emails import check_email
from rxroute.models import (
    CaseNote,
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
from rxroute.prescriptions.errors import Conflict, InvalidChoice, NotFound
from rxroute.prescriptions.history import history, lock_prescription, record_note
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.prescriptions.tasks import defer_send
from rxroute.support.actors import actor_labels
from rxroute.support.notes import notes_of
from rxroute.webhooks import dead_letters

log = structlog.get_logger(__name__)

#: Verified events rxroute could not apply (kept, never dropped); failed ones are listed
#: apart, as dead letters.
FLAGGED_EVENT_STATES = (
    WebhookEventState.UNKNOWN_PRESCRIPTION.value,
    WebhookEventState.UNKNOWN_TYPE.value,
)
PROBLEM_LIMIT = 50


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
    #: Actors in the history, the deliveries and the notes (user ids, ``api:<client>``)
    #: mapped to who it was, in words (see :mod:`rxroute.support.actors`).
    actors: dict[str, str]
    #: Support's notes on the case, oldest first.
    notes: list[CaseNote]
    #: The database's clock when the page was read, for the webhook events' rules.
    now: datetime
    #: Status emails to the patient (sent, waiting, skipped or failed): what and when, never
    #: their text.
    emails: list[PatientNotification] = field(default_factory=list)

    def actor(self, raw: object) -> str:
        """Who ``raw`` (a stored actor) was, in words; "" for none."""
        if not raw:
            return ""
        return self.actors.get(str(raw), str(raw))

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
    notes = await notes_of(session, prescription_id)
    actors = await actor_labels(
        session,
        [event.actor for event in events]
        + [d.actor for d in deliveries]
        + [e.reprocess_requested_by for e in webhook_events]
        + [note.author_user_id for note in notes],
    )
    return PrescriptionView(
        prescription=prescription,
        history=events,
        events=webhook_events,
        attempts=attempts,
        deliveries=deliveries,
        pharmacy_names=pharmacy_names,
        actors=actors,
        notes=notes,
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
        "resend requested by support (who and when: the timeline)",
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


async def change_patient_email(
    session: AsyncSession, user: User, prescription_id: uuid.UUID, *, email: str, reason: str
) -> Patient:
    """Support corrects the patient's contact address (status emails, the platform's copy).

    Checked by the rule staff addresses are checked by (:func:`rxroute.emails.check_email`,
    the ``email-validator`` library). The sign-in address of the patient's account is not
    changed: an address given over the phone must not move who can sign in. The reason goes
    into this prescription's history with the staff actor; neither address is recorded there
    or logged (PHI).
    """
    prescription = await session.get(Prescription, prescription_id)
    if prescription is None:
        raise NotFound("prescription not found")
    address, problem = check_email(email)
    if address is None:
        raise InvalidChoice(f"email: {problem}", field="email")
    why = " ".join(reason.split())[: commands.MAX_REASON]
    if not why:
        raise InvalidChoice("reason: say why, in a few words", field="reason")
    patient = await session.get(Patient, prescription.patient_id, with_for_update=True)
    assert patient is not None
    if patient.email.lower() == address:
        raise Conflict("email: the patient already has this address")
    patient.email = address
    await record_note(
        session,
        prescription_id,
        source=Source.SUPPORT,
        actor=str(user.id),
        detail=f"patient's email address changed by support: {why}",
    )
    log.info(
        "support_patient_email_changed",
        patient_id=str(patient.id),
        prescription_id=str(prescription_id),
        actor=str(user.id),
    )
    return patient
