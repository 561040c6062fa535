"""What the patient's prescription page says: status words, the timeline, the send's progress.

Support reads the recorded statuses as they are ("Sent to pharmacy" = issued on the
platform); a patient needs each line to say what the *pharmacy* knows at that moment. A
Region B pharmacy hears of a prescription only once the prescriber has signed it, so
"issued" reads "waiting for your prescriber to sign", and "signed" is when the pharmacy can
see it. The prescriber's writing stays first, a resend says it is a copy, and the steps name
the pharmacy they were about. The page and its live refresh (``patient.js`` swaps in the
server-rendered panel) use these words, so there is one wording.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.deliveries import ledger
from rxroute.models import (
    DeliveryAttempt,
    Patient,
    PatientNotification,
    Pharmacy,
    Prescription,
    PrescriptionStatusEvent,
)
from rxroute.notifications.kinds import Kind
from rxroute.prescriptions.lifecycle import Status
from rxroute.regions import suggest_region

#: The status line's words where the recorded label would mislead a patient.
_PATIENT_STATUS = {
    Status.QUEUED: "Waiting to send",
    Status.ISSUED: "Waiting for your prescriber to sign",
    Status.SIGNED: "Signed: your pharmacy can see it",
}


#: A resend's line: why a second email reached the pharmacy, and that it changes nothing.
RESENT = (
    "Emailed again by our support team (a copy marked COPY, in case the first was missed; "
    "it can be dispensed only once)"
)


def _email_to_patient(kind: str) -> str:
    """An email we sent the patient, in the patient's own words."""
    try:
        label = Kind(kind).label
    except ValueError:
        label = kind
    return f"We emailed you: {label}"


def status_words(status: Status) -> str:
    """The status as the patient reads it."""
    return _PATIENT_STATUS.get(status, status.label)


@dataclass(frozen=True)
class RegionOption:
    """One region radio button: code (the value), name and its one-line explanation."""

    code: str
    name: str
    explanation: str


def region_options(settings: Settings) -> list[RegionOption]:
    """The served regions, named and explained, in their display names' order."""
    options = []
    for code in settings.region_channels:
        shown = settings.region_shown(code)
        options.append(RegionOption(code, shown.name, shown.explanation))
    return sorted(options, key=lambda option: (option.name.lower(), option.code))


@dataclass(frozen=True)
class Suggestion:
    """The region to preselect, and whether it came from the patient's address."""

    region: str | None
    from_address: bool = False


async def suggested_region(
    session: AsyncSession, settings: Settings, prescription: Prescription, patient_id: uuid.UUID
) -> Suggestion:
    """The prescription's own region (set when written or sent), the patient's recorded
    region, or the one their address falls in; otherwise none: a guess would be preselected
    and sent without the patient noticing."""
    if prescription.region and settings.channel_for_region(prescription.region):
        return Suggestion(prescription.region.upper())
    patient = await session.get(Patient, patient_id)
    if patient is None:
        return Suggestion(None)
    if patient.region and settings.channel_for_region(patient.region):
        return Suggestion(patient.region.upper())
    found = suggest_region(
        settings.region_display, list(settings.region_channels), patient.country, patient.postcode
    )
    return Suggestion(found, from_address=found is not None)


@dataclass(frozen=True)
class Line:
    """One timeline line: what happened, at which pharmacy (if any), when."""

    label: str
    at: datetime
    where: str = ""
    email: bool = False


async def _pharmacies(session: AsyncSession, prescription_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Delivery id -> its pharmacy's name."""
    deliveries = await ledger.deliveries_of(session, prescription_id)
    if not deliveries:
        return {}
    rows = await session.execute(
        select(Pharmacy.id, Pharmacy.name).where(
            Pharmacy.id.in_({d.pharmacy_id for d in deliveries})
        )
    )
    names = {pharmacy_id: name for pharmacy_id, name in rows}
    return {d.id: names.get(d.pharmacy_id, "") for d in deliveries}


def _step(
    event: PrescriptionStatusEvent,
    earlier: list[PrescriptionStatusEvent],
    current: uuid.UUID | None,
) -> str | None:
    """The patient's words for one recorded step; None for steps that add nothing."""
    status = Status(event.status)
    before = {(e.status, e.delivery_id) for e in earlier}
    if status is Status.QUEUED:
        if (Status.FAILED.value, event.delivery_id) in before:
            return "Trying again to send it"
        if any(e.status == Status.QUEUED.value for e in earlier):
            return "Going to a different pharmacy"
        return "You chose the pharmacy; waiting to send"
    if status is Status.SENDING:
        return None  # the status line (and its hint) says it while it lasts
    if status is Status.ISSUED:
        return "On the e-prescription system, waiting for your prescriber to sign"
    if status is Status.SIGNED:
        return "Signed by your prescriber: the pharmacy can now see it"
    if status is Status.EMAILED:
        return "Emailed to the pharmacy"
    if status is Status.PRINTED:
        return "The pharmacy printed it"
    if status is Status.DISPENSED:
        return "Dispensed by the pharmacy"
    if status is Status.FAILED:
        return "Not sent"
    if status is Status.VOIDED:
        if current is not None and event.delivery_id not in (current, None):
            return "Cancelled at the previous pharmacy"
        return "Cancelled"
    if status is Status.EXPIRED:
        return "Expired"
    return status.label


async def timeline(
    session: AsyncSession,
    prescription: Prescription,
    events: list[PrescriptionStatusEvent],
    emails: list[PatientNotification],
) -> list[Line]:
    """The prescription's story for the patient, oldest first, emails to them in place."""
    names = await _pharmacies(session, prescription.id)
    lines = [Line("Written by your prescriber", prescription.created_at)]
    for index, event in enumerate(events):
        label = _step(event, events[:index], prescription.current_delivery_id)
        if label is None:
            continue
        where = names.get(event.delivery_id, "") if event.delivery_id else ""
        lines.append(Line(label, event.occurred_at, where))
    lines.extend(
        Line(_email_to_patient(email.kind), email.sent_at, email=True)
        for email in emails
        if email.sent_at is not None
    )
    # Support's resends: the same prescription emailed again, which the pharmacy sees as a
    # second email (marked COPY), so the patient sees it too, explained.
    resent = await session.execute(
        select(DeliveryAttempt.delivery_id, DeliveryAttempt.finished_at).where(
            DeliveryAttempt.prescription_id == prescription.id,
            DeliveryAttempt.action == "resend",
            DeliveryAttempt.outcome == "succeeded",
        )
    )
    lines.extend(
        Line(RESENT, at, names.get(delivery_id, "") if delivery_id else "")
        for delivery_id, at in resent
    )
    # Stable: equal moments keep the order above (the writing first, a step before its email).
    return sorted(lines, key=lambda line: line.at)


async def retrying(session: AsyncSession, prescription: Prescription) -> bool:
    """Whether the current delivery's last attempt failed and another one is due."""
    if Status(prescription.status) not in (Status.QUEUED, Status.SENDING):
        return False
    delivery = await ledger.current_delivery(session, prescription)
    if delivery is None:
        return False
    last = await session.scalar(
        select(DeliveryAttempt.outcome)
        .where(
            DeliveryAttempt.delivery_id == delivery.id, DeliveryAttempt.series == delivery.series
        )
        .order_by(DeliveryAttempt.started_at.desc())
        .limit(1)
    )
    return last in ("retryable", "ambiguous")


def next_steps(channel_delivers: Status, pharmacy_name: str) -> list[str]:
    """What happens after "Send", as the confirm step lists it, by what the channel does."""
    if channel_delivers is Status.ISSUED:
        return [
            "We put it on the e-prescription system, usually within a minute.",
            f"Your prescriber signs it there. Only then can {pharmacy_name} see it.",
            f"{pharmacy_name} prepares your medicine. This page, and our emails to you, show "
            "each step.",
        ]
    if channel_delivers is Status.EMAILED:
        return [
            f"We email the prescription to {pharmacy_name} as a secure PDF, usually within a "
            "minute.",
            "We email you when it has gone. This page shows each step.",
            f"{pharmacy_name} prepares your medicine and tells us when it has been dispensed.",
        ]
    return [
        f"We send it to {pharmacy_name}, usually within a minute.",
        "This page shows each step.",
    ]
