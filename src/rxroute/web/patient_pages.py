"""The patient's pages: my prescriptions, and one prescription's send form and live status.

Server-rendered so they are fast on a phone and work without JavaScript; ``app.js`` adds the
type-ahead pharmacy search and the live timeline on top. Without JavaScript the search is a
form round trip (the "Search" button, then a "Choose" button per result), and the timeline
is fresh on every load.

One POST endpoint serves the whole form: its ``action`` button says whether the patient
searched, chose a pharmacy or sent. Search and choose redirect to the GET page with the typed
values in the query string (the CSRF token never lands in a URL); send records the choice,
queues the job in the same transaction and redirects to the confirmation.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.models import Patient, Pharmacy, Prescription, Role, User
from rxroute.pharmacies import repository as pharmacy_repository
from rxroute.prescriptions import repository, service
from rxroute.prescriptions.errors import NotFound, PrescriptionError
from rxroute.prescriptions.history import history
from rxroute.prescriptions.lifecycle import NOT_SENDABLE, Status
from rxroute.prescriptions.tasks import defer_send
from rxroute.web.deps import PageUser
from rxroute.web.security import require_csrf
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

#: What a patient reads when a send failed, and what to do next. The platform's own words
#: follow in small print, for support.
FAILURE_HEADLINE = "We could not send this to the pharmacy."
FAILURE_NEXT_STEP = (
    "Our support team has been told. You can choose another pharmacy and try again, "
    "or contact us and quote the prescription number."
)

#: A status that needs no more polling from the patient's page.
QUIET_STATUSES = frozenset({Status.DRAFT, Status.FAILED}) | {
    status for status in Status if status.is_final
}

MAX_QUERY = 100


def _not_for_staff(user: User) -> Response | None:
    """Support and admin use the support console, not the patient pages."""
    if user.role != Role.PATIENT.value:
        return RedirectResponse("/support", status_code=303)
    return None


def _parse_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def _not_found(request: Request) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"status_code": 404, "heading": "Not found", "message": "There is nothing here."},
        status_code=404,
    )


def _region_or_none(runtime: RuntimeDep, raw: str | None) -> str | None:
    code = (raw or "").strip().upper()
    return code if code and runtime.settings.channel_for_region(code) else None


async def _default_region(
    session: AsyncSession, runtime: RuntimeDep, user: User, prescription: Prescription
) -> str:
    if prescription.region and runtime.settings.channel_for_region(prescription.region):
        return prescription.region
    if user.patient_id is not None:
        patient = await session.get(Patient, user.patient_id)
        if patient is not None and runtime.settings.channel_for_region(patient.region):
            return patient.region
    return sorted(runtime.settings.region_channels)[0]


async def _chosen_pharmacy(
    session: AsyncSession, raw_id: str | None, region: str
) -> Pharmacy | None:
    pharmacy_id = _parse_id(raw_id or "")
    if pharmacy_id is None:
        return None
    pharmacy = await session.get(Pharmacy, pharmacy_id)
    if pharmacy is None or not pharmacy.active or pharmacy.region != region:
        return None
    return pharmacy


def _detail_url(prescription_id: uuid.UUID, **params: str) -> str:
    kept = {key: value for key, value in params.items() if value}
    query = f"?{urlencode(kept)}" if kept else ""
    return f"/prescriptions/{prescription_id}{query}"


@router.get("/prescriptions", response_class=HTMLResponse, response_model=None)
async def my_prescriptions(request: Request, session: SessionDep, user: PageUser) -> Response:
    redirect = _not_for_staff(user)
    if redirect is not None:
        return redirect
    found = await repository.list_visible(session, user, limit=200)
    return render(request, "patient/list.html", {"prescriptions": found})


async def _render_detail(
    request: Request,
    session: AsyncSession,
    runtime: RuntimeDep,
    user: User,
    prescription: Prescription,
    *,
    region: str | None = None,
    query: str = "",
    pharmacy_id: str | None = None,
    searched: bool = False,
    sent: bool = False,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    status = Status(prescription.status)
    sendable = status not in NOT_SENDABLE
    events = await history(session, prescription.id)
    regions = sorted(runtime.settings.region_channels)
    context: dict[str, Any] = {
        "p": prescription,
        "status": status,
        "events": events,
        "sendable": sendable,
        "polling": status not in QUIET_STATUSES,
        "sent": sent and status is not Status.DRAFT,
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
    }
    if sendable:
        selected = region or await _default_region(session, runtime, user, prescription)
        context["selected_region"] = selected
        context["chosen"] = await _chosen_pharmacy(session, pharmacy_id, selected)
        if searched:
            context["searched"] = True
            context["results"] = await pharmacy_repository.search(session, selected, query)
    return render(request, "patient/detail.html", context, status_code=status_code)


@router.get("/prescriptions/{prescription_id}", response_class=HTMLResponse, response_model=None)
async def prescription_page(
    request: Request,
    prescription_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    region: str | None = None,
    q: str | None = None,
    pharmacy_id: str | None = None,
    sent: str | None = None,
) -> Response:
    redirect = _not_for_staff(user)
    if redirect is not None:
        return redirect
    key = _parse_id(prescription_id)
    prescription = await repository.get_visible(session, user, key) if key else None
    if prescription is None:
        return _not_found(request)
    return await _render_detail(
        request,
        session,
        runtime,
        user,
        prescription,
        region=_region_or_none(runtime, region),
        query=(q or "")[:MAX_QUERY],
        pharmacy_id=pharmacy_id,
        searched=q is not None,
        sent=sent == "1",
    )


@router.post("/prescriptions/{prescription_id}/send", response_model=None)
async def send_form(
    request: Request,
    prescription_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    region: Annotated[str, Form(max_length=50)] = "",
    q: Annotated[str, Form(max_length=1000)] = "",
    pharmacy_id: Annotated[str, Form(max_length=100)] = "",
    action: Annotated[str, Form(max_length=20)] = "send",
    choose: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    require_csrf(runtime.settings, request, csrf_token)
    redirect = _not_for_staff(user)
    if redirect is not None:
        return redirect
    key = _parse_id(prescription_id)
    prescription = await repository.get_visible(session, user, key) if key else None
    if prescription is None:
        return _not_found(request)
    query = q[:MAX_QUERY]
    region_code = region.strip().upper()
    if choose:
        # No JavaScript: a result's "Choose" button submits its pharmacy's id.
        url = _detail_url(prescription.id, region=region_code, q=query, pharmacy_id=choose)
        return RedirectResponse(url, status_code=303)
    if action == "search":
        url = _detail_url(prescription.id, region=region_code, q=query)
        if "q=" not in url:
            url += ("&" if "?" in url else "?") + "q="
        return RedirectResponse(url, status_code=303)

    chosen = _parse_id(pharmacy_id.strip()) if pharmacy_id.strip() else None
    errors: dict[str, str] = {}
    error: str | None = None
    status_code = 422
    if pharmacy_id.strip() and chosen is None:
        errors["pharmacy_id"] = "Choose a pharmacy from the list."
    else:
        # request_send checks everything before it changes anything, so a refusal leaves
        # nothing to roll back and the page can be rendered from this same session.
        try:
            queued = await service.request_send(
                session,
                runtime,
                user,
                prescription.id,
                region=region_code or None,
                pharmacy_id=chosen,
            )
        except NotFound:
            return _not_found(request)
        except PrescriptionError as exc:
            status_code = exc.status_code
            if exc.field in ("region", "pharmacy_id"):
                errors[exc.field] = _friendly_field_error(exc.field, exc.message)
            else:
                error = exc.message
        else:
            await defer_send(session, queued.id)
            return RedirectResponse(_detail_url(queued.id, sent="1"), status_code=303)
    return await _render_detail(
        request,
        session,
        runtime,
        user,
        prescription,
        region=_region_or_none(runtime, region_code),
        query=query,
        pharmacy_id=pharmacy_id,
        searched=bool(query),
        errors=errors,
        error=error,
        status_code=status_code,
    )


def _friendly_field_error(field: str, message: str) -> str:
    """The service's message without its ``field:`` prefix, as a sentence."""
    if field == "region":
        return "Choose your region."
    text = message.split(": ", 1)[-1]
    if not text or text.startswith("choose a pharmacy"):
        return "Choose a pharmacy from the list."
    return text[:1].upper() + text[1:]
