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

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.prescriptions import repository, service
from rxroute.prescriptions.errors import NotFound, PrescriptionError
from rxroute.prescriptions.tasks import defer_send
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
    parse_id,
    region_or_none,
    render_detail,
)
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
) -> Response:
    redirect = not_for_staff(user)
    if redirect is not None:
        return redirect
    key = parse_id(prescription_id)
    prescription = await repository.get_visible(session, user, key) if key else None
    if prescription is None:
        return not_found(request)
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
    action: Annotated[str, Form(max_length=20)] = "send",
    choose: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    redirect = not_for_staff(user)
    if redirect is not None:
        return redirect
    key = parse_id(prescription_id)
    prescription = await repository.get_visible(session, user, key) if key else None
    if prescription is None:
        return not_found(request)
    query = q[:MAX_QUERY]
    region_code = region.strip().upper()
    if choose:
        # No JavaScript: a result's "Choose" button submits its pharmacy's id.
        url = detail_url(prescription.id, region=region_code, q=query, pharmacy_id=choose)
        return RedirectResponse(url, status_code=303)
    if action == "search":
        url = detail_url(prescription.id, region=region_code, q=query)
        if "q=" not in url:
            url += ("&" if "?" in url else "?") + "q="
        return RedirectResponse(url, status_code=303)

    chosen = parse_id(pharmacy_id.strip()) if pharmacy_id.strip() else None
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
            return not_found(request)
        except PrescriptionError as exc:
            status_code = exc.status_code
            if exc.field in ("region", "pharmacy_id"):
                errors[exc.field] = friendly_field_error(exc.field, exc.message)
            else:
                error = exc.message
        else:
            await defer_send(session, queued.id)
            return RedirectResponse(detail_url(queued.id, sent="1"), status_code=303)
    return await render_detail(
        request,
        session,
        runtime,
        user,
        prescription,
        region=region_or_none(runtime, region_code),
        query=query,
        pharmacy_id=pharmacy_id,
        searched=bool(query),
        errors=errors,
        error=error,
        status_code=status_code,
    )


#: Change pharmacy and cancel: the same pages, their own module.
router.include_router(changes_router)
