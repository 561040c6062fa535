"""The patient's pages: my prescriptions, and one prescription's send form and live status.

Server-rendered so they are fast on a phone and work without JavaScript; ``app.js`` adds the
type-ahead pharmacy search and the live timeline on top. Without JavaScript the search is a
form round trip (the "Search" button, then a "Choose" button per result), and the timeline
is fresh on every load.

One POST endpoint serves the whole form: its ``action`` button says whether the patient
searched, chose a pharmacy or sent. Search and choose redirect to the GET page with the typed
values in the query string (the CSRF token never lands in a URL); send records the choice,
queues the job in the same transaction and redirects to the confirmation.

Changing pharmacy and cancelling, once it is on its way, are in
:mod:`rxroute.web.patient_changes`; the page itself is built by
:mod:`rxroute.web.patient_detail`.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.channels.registry import get_channel
from rxroute.deliveries import commands
from rxroute.models import Prescription, User
from rxroute.prescriptions import repository, service
from rxroute.prescriptions.errors import InvalidChoice, NotFound, PrescriptionError
from rxroute.prescriptions.lifecycle import NOT_SENDABLE, Status
from rxroute.prescriptions.reference import patient_reference
from rxroute.prescriptions.tasks import defer_send
from rxroute.runtime import Runtime
from rxroute.web.deps import PageUser, page_user
from rxroute.web.failure_text import FAILURE_HEADLINE, FAILURE_NEXT_STEP
from rxroute.web.patient_changes import router as changes_router
from rxroute.web.patient_detail import (
    MAX_QUERY,
    QUIET_STATUSES,
    detail_url,
    friendly_field_error,
    not_for_staff,
    not_found,
    own_prescription,
    parse_id,
    region_or_none,
    render_detail,
    shown_count,
)
from rxroute.web.patient_view import RegionOption, next_steps
from rxroute.web.security import csrf_guard
from rxroute.web.templating import render

__all__ = ["FAILURE_HEADLINE", "FAILURE_NEXT_STEP", "QUIET_STATUSES", "router"]

#: Signed in, and every POST carries the CSRF token (checked here, before any handler).
router = APIRouter(include_in_schema=False, dependencies=[Depends(page_user), Depends(csrf_guard)])


@router.get("/prescriptions", response_class=HTMLResponse, response_model=None)
async def my_prescriptions(request: Request, session: SessionDep, user: PageUser) -> Response:
    redirect = not_for_staff(user)
    if redirect is not None:
        return redirect
    found = await repository.list_visible(session, user, limit=200)
    return render(request, "patient/list.html", {"prescriptions": found})


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
    changed: str | None = None,
    shown: str | None = None,
) -> Response:
    prescription = await own_prescription(request, session, user, prescription_id)
    if isinstance(prescription, Response):
        return prescription
    return await render_detail(
        request,
        session,
        runtime,
        user,
        prescription,
        region=region_or_none(runtime, region),
        query=(q or "")[:MAX_QUERY],
        pharmacy_id=pharmacy_id,
        searched=q is not None,
        sent=sent == "1",
        changed=changed == "1",
        shown=shown_count(shown),
    )


async def _confirm_page(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    prescription: Prescription,
    region: str,
    raw_pharmacy_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response | None:
    """The confirm step for a checked choice; None when the choice is not valid."""
    try:
        chosen = await commands.choose_destination(
            session, runtime, region, parse_id(raw_pharmacy_id.strip())
        )
    except InvalidChoice:
        return None
    shown = runtime.settings.region_shown(chosen.region)
    channel = get_channel(runtime, chosen.channel)
    context: dict[str, Any] = {
        "p": prescription,
        "reference": patient_reference(prescription),
        "pharmacy": chosen.pharmacy,
        "region": RegionOption(chosen.region, shown.name, shown.explanation),
        "steps": next_steps(channel.delivered_status, chosen.pharmacy.name),
        "back_url": detail_url(
            prescription.id, region=chosen.region, pharmacy_id=str(chosen.pharmacy.id)
        ),
        "allowed": Status(prescription.status) not in NOT_SENDABLE,
        "error": error,
    }
    return render(request, "patient/send_confirm.html", context, status_code=status_code)


@router.get(
    "/prescriptions/{prescription_id}/send/confirm",
    response_class=HTMLResponse,
    response_model=None,
)
async def send_confirm_page(
    request: Request,
    prescription_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    region: str = "",
    pharmacy_id: str = "",
) -> Response:
    """The confirm step: the pharmacy, its address and what happens next, then "Send"."""
    prescription = await own_prescription(request, session, user, prescription_id)
    if isinstance(prescription, Response):
        return prescription
    status = Status(prescription.status)
    if status in NOT_SENDABLE or not pharmacy_id:
        # Already on its way (a second tab, the back button), or nothing chosen (back from
        # signing in again): the prescription page says where it is.
        return RedirectResponse(detail_url(prescription.id), status_code=303)
    page = await _confirm_page(
        request, session, runtime, prescription, region[:50], pharmacy_id[:100]
    )
    if page is not None:
        return page
    return await _review_failed(request, session, runtime, user, prescription, region, pharmacy_id)


async def _review_failed(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    prescription: Prescription,
    region: str,
    pharmacy_id: str,
    query: str = "",
) -> Response:
    """The send form again, with the field that stopped the choice named (422), and what
    was typed searched again."""
    region_code = region.strip().upper()
    errors: dict[str, str] = {}
    try:
        await commands.choose_destination(
            session, runtime, region_code, parse_id(pharmacy_id.strip())
        )
    except InvalidChoice as exc:
        name = exc.field if exc.field in ("region", "pharmacy_id") else "pharmacy_id"
        errors[name] = friendly_field_error(name, exc.message)
    return await render_detail(
        request,
        session,
        runtime,
        user,
        prescription,
        region=region_or_none(runtime, region_code),
        query=query,
        searched=bool(query),
        pharmacy_id=pharmacy_id,
        errors=errors or {"pharmacy_id": "Choose a pharmacy from the list."},
        status_code=422,
    )


@router.post("/prescriptions/{prescription_id}/send", response_model=None)
async def send_form(
    request: Request,
    prescription_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    region: Annotated[str, Form(max_length=50)] = "",
    q: Annotated[str, Form(max_length=1000)] = "",
    pharmacy_id: Annotated[str, Form(max_length=100)] = "",
    action: Annotated[str, Form(max_length=20)] = "review",
    choose: Annotated[str, Form(max_length=100)] = "",
    shown: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """Search, choose, review (to the confirm step) or, from the confirm step, send."""
    prescription = await own_prescription(request, session, user, prescription_id)
    if isinstance(prescription, Response):
        return prescription
    query = q[:MAX_QUERY]
    region_code = region.strip().upper()
    if choose:
        # No JavaScript: a result's "Choose" button submits its pharmacy's id.
        url = detail_url(prescription.id, region=region_code, q=query, pharmacy_id=choose)
        return RedirectResponse(url, status_code=303)
    if action == "search" or shown:
        url = detail_url(
            prescription.id,
            region=region_code,
            q=query,
            pharmacy_id=pharmacy_id.strip(),
            shown=shown if shown.isdigit() else "",
        )
        if "q=" not in url:
            url += ("&" if "?" in url else "?") + "q="
        return RedirectResponse(url, status_code=303)
    if action != "confirm":
        # "Continue" (or an old form's "Send"): nothing is sent before the confirm step.
        try:
            destination = await commands.choose_destination(
                session, runtime, region_code, parse_id(pharmacy_id.strip())
            )
        except InvalidChoice:
            return await _review_failed(
                request, session, runtime, user, prescription, region_code, pharmacy_id, query
            )
        url = f"/prescriptions/{prescription.id}/send/confirm?" + urlencode(
            {"region": destination.region, "pharmacy_id": str(destination.pharmacy.id)}
        )
        return RedirectResponse(url, status_code=303)

    chosen = parse_id(pharmacy_id.strip()) if pharmacy_id.strip() else None
    if chosen is None:
        return await _review_failed(
            request, session, runtime, user, prescription, region_code, pharmacy_id
        )
    # request_send checks everything before it changes anything, so a refusal leaves
    # nothing to roll back and the page can be rendered from this same session.
    try:
        queued = await service.request_send(
            session, runtime, user, prescription.id, region=region_code or None, pharmacy_id=chosen
        )
    except NotFound:
        return not_found(request)
    except PrescriptionError as exc:
        if exc.field in ("region", "pharmacy_id"):
            return await _review_failed(
                request, session, runtime, user, prescription, region_code, pharmacy_id
            )
        page = await _confirm_page(
            request,
            session,
            runtime,
            prescription,
            region_code,
            pharmacy_id,
            error=exc.message[:1].upper() + exc.message[1:],
            status_code=exc.status_code,
        )
        if page is not None:
            return page
        return await render_detail(
            request,
            session,
            runtime,
            user,
            prescription,
            error=exc.message,
            status_code=exc.status_code,
        )
    await defer_send(session, queued.id)
    return RedirectResponse(detail_url(queued.id, sent="1"), status_code=303)


#: Change pharmacy and cancel: the same pages, their own module.
router.include_router(changes_router)
