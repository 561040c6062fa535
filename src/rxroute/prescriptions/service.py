"""Business rules for prescriptions. Services add and flush; the caller owns the transaction."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.models import Pharmacy, Prescription, User
from rxroute.prescriptions import repository
from rxroute.prescriptions.errors import Conflict, InvalidChoice, NotFound
from rxroute.prescriptions.history import record_status
from rxroute.prescriptions.lifecycle import NOT_SENDABLE, Source, Status


def source_for(user: User) -> Source:
    return Source.PATIENT if user.role == "patient" else Source.SUPPORT


async def request_send(
    session: AsyncSession,
    settings: Settings,
    user: User,
    prescription_id: uuid.UUID,
    *,
    region: str | None,
    pharmacy_id: uuid.UUID | None,
) -> Prescription:
    """Record the patient's region and pharmacy and queue the prescription for sending.

    The caller defers the send job in the same transaction (see
    :func:`rxroute.prescriptions.tasks.defer_send`), so a queued prescription always has a
    job and a job always has its prescription.
    """
    prescription = await repository.get_visible(session, user, prescription_id, for_update=True)
    if prescription is None:
        raise NotFound("prescription not found")
    current = Status(prescription.status)
    if current in NOT_SENDABLE:
        raise Conflict(
            f"this prescription is already {current.value} ({current.label.lower()}); "
            "it cannot be sent again"
        )
    if not region or not region.strip():
        raise InvalidChoice("region: choose the patient's region", field="region")
    code = region.strip().upper()
    channel = settings.channel_for_region(code)
    if channel is None:
        served = ", ".join(sorted(settings.region_channels))
        raise InvalidChoice(f"region: {code!r} is not served; use one of {served}", field="region")
    if pharmacy_id is None:
        raise InvalidChoice("pharmacy_id: choose a pharmacy", field="pharmacy_id")
    pharmacy = await session.get(Pharmacy, pharmacy_id)
    if pharmacy is None or not pharmacy.active:
        raise InvalidChoice(
            "pharmacy_id: no active accepted pharmacy has this id", field="pharmacy_id"
        )
    if pharmacy.region != code:
        raise InvalidChoice(
            f"pharmacy_id: this pharmacy is in region {pharmacy.region}, not {code}; "
            "choose one from the region's list",
            field="pharmacy_id",
        )
    if channel == "erx" and pharmacy.platform_contact_id is None:
        raise InvalidChoice(
            "pharmacy_id: this pharmacy has no e-prescription contact ID yet; choose another "
            "or ask an admin to add it",
            field="pharmacy_id",
        )
    if channel == "email" and not pharmacy.email:
        raise InvalidChoice(
            "pharmacy_id: this pharmacy has no email address yet; choose another",
            field="pharmacy_id",
        )
    if not prescription.items:
        raise InvalidChoice("items: the prescription has no items to send", field="items")

    prescription.region = code
    prescription.channel = channel
    prescription.pharmacy_id = pharmacy.id
    prescription.failure_reason = None
    await record_status(
        session, prescription.id, Status.QUEUED, source=source_for(user), actor=str(user.id)
    )
    return prescription
