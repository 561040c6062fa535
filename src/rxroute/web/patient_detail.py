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
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.deliveries import ledger
from rxroute.models import (
    DeliveryState,
    Pharmacy,
    Prescription,
    PrescriptionStatusEvent,
    Role,
    User,
)
from rxroute.notifications import service as notifications
from rxroute.pharmacies import repository as pharmacy_repository
from rxroute.prescriptions import repository
from rxroute.prescriptions.history import history
from rxroute.prescriptions.lifecycle import CHANGEABLE, NOT_SENDABLE, Source, Status
from rxroute.prescriptions.reference import patient_reference
from rxroute.runtime import Runtime
from rxroute.web.failure_text import (
    FAILURE_HEADLINE,
    RETRYING,
    SENDING_HINT,
    SLOW_AFTER_SECONDS,
    SLOW_HINT,
    explain_failure,
)
from rxroute.web.patient_view import (
    Suggestion,
    region_options,
    retrying,
    status_words,
    suggested_region,
    timeline,
)
from rxroute.web.templating import render

#: A status that needs no more polling from the patient's page.
QUIET_STATUSES = frozenset({Status.DRAFT, Status.FAILED}) | {
    status for status in Status if status.is_final
}

#: On its way to a pharmacy: the patient may change pharmacy (a failed or draft one is
#: simply sent again with the send form).
IN_FLIGHT = CHANGEABLE - {Status.DRAFT, Status.FAILED}

MAX_QUERY = 100
#: Pharmacies per page of search results; "Show more" adds a page, up to MAX_SHOWN.
PAGE_SIZE = 20
MAX_SHOWN = 200


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


async def own_prescription(
    request: Request, session: AsyncSession, user: User, raw_id: str
) -> Prescription | Response:
    """The caller's own prescription, or the response to send instead (404, or staff sent to
    their console): the one door every patient page about a prescription goes through."""
    redirect = not_for_staff(user)
    if redirect is not None:
        return redirect
    key = parse_id(raw_id)
    prescription = await repository.get_visible(session, user, key) if key else None
    if prescription is None:
        return not_found(request)
    return prescription


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


def shown_count(raw: str | None) -> int:
    """How many search results to show: the "Show more" count, bounded; a page by default."""
    if raw and raw.isdigit():
        return max(PAGE_SIZE, min(int(raw), MAX_SHOWN))
    return PAGE_SIZE


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


def _sending_hint(events: list[PrescriptionStatusEvent]) -> str:
    """How long sending usually takes, or, once it has taken longer, that we keep trying."""
    queued = next((e for e in reversed(events) if e.status == Status.QUEUED.value), None)
    if queued is not None and datetime.now(UTC) - queued.occurred_at > timedelta(
        seconds=SLOW_AFTER_SECONDS
    ):
        return SLOW_HINT
    return SENDING_HINT


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


async def last_pharmacy(
    session: AsyncSession, patient_id: uuid.UUID | None, prescription_id: uuid.UUID
) -> Pharmacy | None:
    """The pharmacy the patient's most recent other prescription went to, if still usable.

    Derived from what was sent rather than stored separately, so it cannot disagree with
    the records (and a deactivated pharmacy is not offered again).
    """
    if patient_id is None:
        return None
    found = await session.scalar(
        select(Pharmacy)
        .join(Prescription, Prescription.pharmacy_id == Pharmacy.id)
        .where(
            Prescription.patient_id == patient_id,
            Prescription.id != prescription_id,
            Pharmacy.active.is_(True),
        )
        .order_by(Prescription.updated_at.desc())
        .limit(1)
    )
    return found


async def pharmacy_page(
    session: AsyncSession, region: str, query: str, shown: int
) -> tuple[list[pharmacy_repository.PharmacyCard], int | None, bool]:
    """Up to ``shown`` results, the region's total for an empty query, and whether more exist.

    Counting every match of a typed query would read much of the region on a big list, so
    only browsing the whole region (empty query, an index range) is counted exactly.
    """
    found = await pharmacy_repository.search(session, region, query, limit=shown + 1)
    more = len(found) > shown
    total: int | None = None
    if not pharmacy_repository.normalise_query(query):
        total = await session.scalar(
            select(func.count())
            .select_from(Pharmacy)
            .where(Pharmacy.region == region, Pharmacy.active.is_(True))
        )
    return found[:shown], total, more


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
    shown: int = PAGE_SIZE,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    status = Status(prescription.status)
    sendable = status not in NOT_SENDABLE
    changeable = can_change(status)
    settings = runtime.settings
    events = await history(session, prescription.id)
    emails = await notifications.of_prescription(session, prescription.id, sent_only=True)
    failed = status is Status.FAILED
    ended = status in (Status.VOIDED, Status.EXPIRED)
    context: dict[str, Any] = {
        "p": prescription,
        "status": status,
        "status_words": status_words(status),
        "reference": patient_reference(prescription),
        "timeline": await timeline(session, prescription, events, emails),
        "sendable": sendable,
        "can_change": changeable,
        "can_cancel": can_cancel(status),
        "polling": status not in QUIET_STATUSES,
        # Success is never shown beside a failure or an ending.
        "sent": sent and status is not Status.DRAFT and not failed and not ended,
        "changed": changed and changeable and not failed,
        "failure": explain_failure(prescription.failure_reason) if failed else None,
        "failure_headline": FAILURE_HEADLINE,
        "retrying": await retrying(session, prescription),
        "retrying_text": RETRYING,
        "sending_hint": _sending_hint(events),
        "regions": region_options(settings),
        "errors": errors or {},
        "error": error,
        "query": query[:MAX_QUERY],
        "results": [],
        "total": None,
        "more": False,
        "shown": shown,
        "searched": False,
        "chosen": None,
        "chosen_is_last": False,
        "selected_region": "",
        "region_from_address": False,
        "ending": await _ending(session, prescription, events),
    }
    if sendable or changeable:
        suggestion = (
            Suggestion(region)
            if region
            else await suggested_region(session, settings, prescription, user.patient_id)
            if user.patient_id is not None
            else Suggestion(None)
        )
        selected = suggestion.region
        chosen = await chosen_pharmacy(session, pharmacy_id, selected) if selected else None
        if chosen is None and not pharmacy_id and sendable:
            # Offer the pharmacy used last time (the confirm step still shows it first).
            last = await last_pharmacy(session, user.patient_id, prescription.id)
            if (
                last is not None
                # The last pharmacy says more than an address does; not more than a region
                # the prescription or the patient's record names.
                and (selected in (None, last.region) or suggestion.from_address)
                and settings.channel_for_region(last.region)
            ):
                chosen, selected = last, last.region
                context["chosen_is_last"] = True
        previous = prescription.pharmacy
        if (
            failed
            and chosen is None
            and previous is not None
            and previous.active
            and previous.region == selected
        ):
            # "Try again" after an outage: the same pharmacy is already chosen.
            chosen = previous
        context["selected_region"] = selected or ""
        context["region_from_address"] = suggestion.from_address and selected == suggestion.region
        context["chosen"] = chosen
        if searched and selected:
            context["searched"] = True
            found, total, more = await pharmacy_page(session, selected, query, shown)
            context.update(results=found, total=total, more=more)
    return render(request, "patient/detail.html", context, status_code=status_code)
