"""The patient's prescription page, as rendered by every route that shows it.

The page's GET, the send form, and the change-of-course routes (change pharmacy, cancel)
all end on this page, with or without an error; building its context lives here once.
What the page offers follows the status: a draft or failed prescription gets the send form;
one on its way to a pharmacy (queued up to printed) gets "change pharmacy" and "cancel";
a cancelled or expired one says why and what to do next.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.deliveries import ledger
from rxroute.models import (
    DeliveryState,
    Patient,
    Pharmacy,
    Prescription,
    PrescriptionStatusEvent,
    Role,
    User,
)
from rxroute.notifications import service as notifications
from rxroute.pharmacies import repository as pharmacy_repository
from rxroute.prescriptions.history import history
from rxroute.prescriptions.lifecycle import CHANGEABLE, NOT_SENDABLE, Source, Status
from rxroute.runtime import Runtime
from rxroute.web.failure_text import FAILURE_HEADLINE, FAILURE_NEXT_STEP
from rxroute.web.templating import render

#: A status that needs no more polling from the patient's page.
QUIET_STATUSES = frozenset({Status.DRAFT, Status.FAILED}) | {
    status for status in Status if status.is_final
}

#: On its way to a pharmacy: the patient may change pharmacy (a failed or draft one is
#: simply sent again with the send form).
IN_FLIGHT = CHANGEABLE - {Status.DRAFT, Status.FAILED}

MAX_QUERY = 100


def not_for_staff(user: User) -> Response | None:
    """Support and admin use the support console, prescribers their own pages, not the
    patient pages."""
    if user.role == Role.PRESCRIBER.value:
        return RedirectResponse("/prescriber", status_code=303)
    if user.role != Role.PATIENT.value:
        return RedirectResponse("/support", status_code=303)
    return None


def parse_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def not_found(request: Request) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"status_code": 404, "heading": "Not found", "message": "There is nothing here."},
        status_code=404,
    )


def region_or_none(runtime: Runtime, raw: str | None) -> str | None:
    code = (raw or "").strip().upper()
    return code if code and runtime.settings.channel_for_region(code) else None


def can_change(status: Status) -> bool:
    return status in IN_FLIGHT


def can_cancel(status: Status) -> bool:
    return status in CHANGEABLE and status is not Status.DRAFT


async def default_region(
    session: AsyncSession, runtime: Runtime, user: User, prescription: Prescription
) -> str:
    if prescription.region and runtime.settings.channel_for_region(prescription.region):
        return prescription.region
    if user.patient_id is not None:
        patient = await session.get(Patient, user.patient_id)
        if patient is not None and runtime.settings.channel_for_region(patient.region):
            return patient.region
    return sorted(runtime.settings.region_channels)[0]


async def chosen_pharmacy(
    session: AsyncSession, raw_id: str | None, region: str
) -> Pharmacy | None:
    pharmacy_id = parse_id(raw_id or "")
    if pharmacy_id is None:
        return None
    pharmacy = await session.get(Pharmacy, pharmacy_id)
    if pharmacy is None or not pharmacy.active or pharmacy.region != region:
        return None
    return pharmacy


def detail_url(prescription_id: uuid.UUID, **params: str) -> str:
    kept = {key: value for key, value in params.items() if value}
    query = f"?{urlencode(kept)}" if kept else ""
    return f"/prescriptions/{prescription_id}{query}"


def friendly_field_error(field: str, message: str) -> str:
    """The service's message without its ``field:`` prefix, as a sentence."""
    if field == "region":
        return "Choose your region."
    text = message.split(": ", 1)[-1]
    if not text or text.startswith("choose a pharmacy"):
        return "Choose a pharmacy from the list."
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Ending:
    """Why a prescription stopped (cancelled or expired), for the patient: who, when, why."""

    status: Status
    source: str
    at: datetime | None
    reason: str | None


async def _ending(
    session: AsyncSession, prescription: Prescription, events: list[PrescriptionStatusEvent]
) -> Ending | None:
    status = Status(prescription.status)
    if status not in (Status.VOIDED, Status.EXPIRED):
        return None
    current = prescription.current_delivery_id
    fact = next(
        (
            event
            for event in reversed(events)
            if event.status == status.value and event.delivery_id in (current, None)
        ),
        None,
    )
    reason = fact.detail if fact else None
    if status is Status.VOIDED and current is not None:
        # A cancel that had to take a platform copy back records the platform's answer in
        # the fact; the reason as given is the delivery's closing reason.
        delivery = await ledger.get_delivery(session, current)
        if delivery.state == DeliveryState.WITHDRAWN.value and delivery.closed_reason:
            reason = delivery.closed_reason
    return Ending(
        status=status,
        source=fact.source if fact else Source.SYSTEM.value,
        at=fact.occurred_at if fact else None,
        reason=reason,
    )


async def pharmacy_names_by_delivery(
    session: AsyncSession, prescription_id: uuid.UUID
) -> dict[str, str]:
    """Delivery id -> its pharmacy's name, once there is more than one delivery.

    The timeline then says which pharmacy each step was about (a cancelled copy at the old
    pharmacy, the new one queued); with a single delivery the status line says it already.
    """
    deliveries = await ledger.deliveries_of(session, prescription_id)
    if len(deliveries) < 2:
        return {}
    rows = await session.execute(
        select(Pharmacy.id, Pharmacy.name).where(
            Pharmacy.id.in_({d.pharmacy_id for d in deliveries})
        )
    )
    names = {pharmacy_id: name for pharmacy_id, name in rows}
    return {str(d.id): names.get(d.pharmacy_id, "") for d in deliveries}


async def render_detail(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    prescription: Prescription,
    *,
    region: str | None = None,
    query: str = "",
    pharmacy_id: str | None = None,
    searched: bool = False,
    sent: bool = False,
    changed: bool = False,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    status = Status(prescription.status)
    sendable = status not in NOT_SENDABLE
    changeable = can_change(status)
    events = await history(session, prescription.id)
    emails = await notifications.of_prescription(session, prescription.id, sent_only=True)
    regions = sorted(runtime.settings.region_channels)
    context: dict[str, Any] = {
        "p": prescription,
        "status": status,
        "events": events,
        "timeline": notifications.timeline(events, emails),
        "sendable": sendable,
        "can_change": changeable,
        "can_cancel": can_cancel(status),
        "polling": status not in QUIET_STATUSES,
        "sent": sent and status is not Status.DRAFT,
        "changed": changed and changeable,
        "failure_headline": FAILURE_HEADLINE,
        "failure_next_step": FAILURE_NEXT_STEP,
        "regions": regions,
        "errors": errors or {},
        "error": error,
        "query": query[:MAX_QUERY],
        "results": [],
        "searched": False,
        "chosen": None,
        "selected_region": "",
        "timeline_pharmacies": await pharmacy_names_by_delivery(session, prescription.id),
        "ending": await _ending(session, prescription, events),
    }
    if sendable or changeable:
        selected = region or await default_region(session, runtime, user, prescription)
        context["selected_region"] = selected
        context["chosen"] = await chosen_pharmacy(session, pharmacy_id, selected)
        if searched:
            context["searched"] = True
            context["results"] = await pharmacy_repository.search(session, selected, query)
    return render(request, "patient/detail.html", context, status_code=status_code)
