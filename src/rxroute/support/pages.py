"""Support console: find a prescription, see what happened, act on it.

Every action is a POST form carrying the CSRF token (checked by the router's
dependencies, with the staff role); success redirects (POST/redirect/GET) with a fixed
flash message, a refusal re-renders the page with the reason. Void, retry and re-route go
through a confirm step that asks for a reason (:mod:`.change_pages`); a missing reason
comes back on that step.

The search is a POST too: what support types may be a patient's email address, name or
date of birth, and a query string would put it in the browser's history, proxies' and
servers' access logs and any Referer. The results are rendered in the POST's answer; nothing
typed lands in a URL. The console's landing section is the "needs attention" list
(:mod:`.attention`).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.deliveries.commands import cancel
from rxroute.prescriptions.errors import NotFound, PrescriptionError
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime, get_runtime
from rxroute.support import attention, service
from rxroute.support import search as finder
from rxroute.support.change_pages import (
    REASON_REQUIRED,
    can_reroute,
    reason_given,
    render_confirm,
)
from rxroute.support.change_pages import router as change_router
from rxroute.support.event_pages import router as event_router
from rxroute.support.note_pages import router as note_router
from rxroute.web.deps import StaffPageUser, require_staff_page
from rxroute.web.security import csrf_guard
from rxroute.web.templating import render
from rxroute.webhooks import dead_letters

#: Support or admin only, and every POST carries the CSRF token (checked here).
router = APIRouter(
    prefix="/support",
    include_in_schema=False,
    dependencies=[Depends(require_staff_page), Depends(csrf_guard)],
)

#: Flash messages after a redirect, by key: fixed text, so the URL cannot inject any.
FLASHES = {
    "voided": "The prescription was voided.",
    "retried": "The send was queued again.",
    "rerouted": "Re-routed: the earlier delivery is withdrawn first, then the new one is sent.",
    "resend": "The email will be resent to the pharmacy shortly.",
    "reprocess": "The webhook event was queued to be processed again.",
    "noted": "The note was added.",
    "email": "The patient's email address was changed.",
}

#: The search form's fields (all optional, combined with AND).
SEARCH_FIELDS = ("q", "name", "dob", "pharmacy", "status", "created_from", "created_to")

STALE_MINUTES = int(dead_letters.STALE_PENDING_AFTER.total_seconds() // 60)


async def _console(
    request: Request, session: SessionDep, runtime: Runtime, form: dict[str, str] | None
) -> HTMLResponse:
    result = None
    if form is not None:
        criteria, errors = finder.parse_criteria(form)
        result = await finder.run(session, criteria, runtime.settings, errors)
    needs = await attention.needs_attention(session, runtime.settings)
    return render(
        request,
        "support/index.html",
        {
            "form": {key: (form or {}).get(key, "") for key in SEARCH_FIELDS},
            "result": result,
            "attention": needs,
            "statuses": [status.value for status in Status],
            "stuck_minutes": int(attention.STUCK_AFTER.total_seconds() // 60),
            "expiry_days": attention.EXPIRY_WARNING.days,
            "stale_minutes": STALE_MINUTES,
        },
        status_code=422 if result is not None and result.errors else 200,
    )


@router.get("", response_class=HTMLResponse)
async def console(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: StaffPageUser
) -> HTMLResponse:
    """The search form and what needs attention (a ``?q=`` in the URL is not searched)."""
    return await _console(request, session, runtime, None)


@router.post("/search", response_class=HTMLResponse)
async def search(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    q: Annotated[str, Form(max_length=2000)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    dob: Annotated[str, Form(max_length=20)] = "",
    pharmacy: Annotated[str, Form(max_length=200)] = "",
    status: Annotated[str, Form(max_length=20)] = "",
    created_from: Annotated[str, Form(max_length=20)] = "",
    created_to: Annotated[str, Form(max_length=20)] = "",
) -> HTMLResponse:
    """The console with the results: rendered in the answer, so nothing typed is in a URL."""
    form = {
        "q": q[: finder.MAX_QUERY_LENGTH],
        "name": name[: finder.MAX_TEXT_LENGTH],
        "dob": dob,
        "pharmacy": pharmacy[: finder.MAX_TEXT_LENGTH],
        "status": status,
        "created_from": created_from,
        "created_to": created_to,
    }
    return await _console(request, session, runtime, form)


async def _page(
    request: Request,
    session: SessionDep,
    prescription_id: uuid.UUID,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        view = await service.prescription_view(session, prescription_id)
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=exc.message) from exc
    flash = FLASHES.get(request.query_params.get("done", ""))
    return render(
        request,
        "support/prescription.html",
        {
            "view": view,
            "p": view.prescription,
            "error": error,
            "flash": flash,
            "stale_minutes": STALE_MINUTES,
            "can_reroute": can_reroute(Status(view.prescription.status)),
            "regions": sorted(get_runtime().settings.region_channels.items()),
        },
        status_code=status_code,
    )


@router.get("/prescriptions/{prescription_id}", response_class=HTMLResponse)
async def prescription_page(
    request: Request, session: SessionDep, user: StaffPageUser, prescription_id: uuid.UUID
) -> HTMLResponse:
    return await _page(request, session, prescription_id)


def _done(prescription_id: uuid.UUID, key: str) -> RedirectResponse:
    return RedirectResponse(f"/support/prescriptions/{prescription_id}?done={key}", 303)


async def _refused(
    request: Request, session: SessionDep, prescription_id: uuid.UUID, error: PrescriptionError
) -> Response:
    if isinstance(error, NotFound):
        raise HTTPException(status_code=404, detail=error.message)
    return await _page(
        request, session, prescription_id, error=error.message, status_code=error.status_code
    )


@router.post("/prescriptions/{prescription_id}/void", response_model=None)
async def void(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        await cancel(runtime, user, prescription_id, reason=reason)
    except PrescriptionError as exc:
        if exc.field == "reason":
            return await render_confirm(
                request,
                session,
                runtime,
                user,
                prescription_id,
                "void",
                error=exc.message,
                status_code=exc.status_code,
            )
        return await _refused(request, session, prescription_id, exc)
    return _done(prescription_id, "voided")


@router.post("/prescriptions/{prescription_id}/retry", response_model=None)
async def retry(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    if not reason_given(reason):
        return await render_confirm(
            request,
            session,
            runtime,
            user,
            prescription_id,
            "retry",
            error=REASON_REQUIRED,
            status_code=422,
        )
    try:
        await service.retry_failed_send(session, user, prescription_id, reason=reason)
    except PrescriptionError as exc:
        return await _refused(request, session, prescription_id, exc)
    return _done(prescription_id, "retried")


@router.post("/prescriptions/{prescription_id}/resend-email", response_model=None)
async def resend_email(
    request: Request,
    session: SessionDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
) -> Response:
    try:
        await service.request_email_resend(session, user, prescription_id)
    except PrescriptionError as exc:
        return await _refused(request, session, prescription_id, exc)
    return _done(prescription_id, "resend")


async def _webhooks_page(
    request: Request, session: SessionDep, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    problems = await service.webhook_problems(session)
    flash = FLASHES.get(request.query_params.get("done", ""))
    return render(
        request,
        "support/webhooks.html",
        {
            "problems": problems,
            "stale_minutes": STALE_MINUTES,
            "error": error,
            "flash": flash,
        },
        status_code=status_code,
    )


@router.get("/webhooks", response_class=HTMLResponse)
async def webhook_problems(
    request: Request, session: SessionDep, user: StaffPageUser
) -> HTMLResponse:
    return await _webhooks_page(request, session)


@router.post("/webhooks/{event_id}/reprocess", response_model=None)
async def reprocess_webhook_event(
    request: Request,
    session: SessionDep,
    user: StaffPageUser,
    event_id: uuid.UUID,
    prescription_id: Annotated[uuid.UUID | None, Form()] = None,
) -> Response:
    """Re-queue a failed or stale event; back to the page it was asked from.

    ``prescription_id`` is set by the button on a prescription's page (only to return
    there); the list's button leaves it out.
    """
    try:
        await dead_letters.request_reprocess(session, user, event_id)
    except PrescriptionError as exc:
        if isinstance(exc, NotFound):
            raise HTTPException(status_code=404, detail=exc.message) from exc
        if prescription_id is not None:
            return await _refused(request, session, prescription_id, exc)
        return await _webhooks_page(
            request, session, error=exc.message, status_code=exc.status_code
        )
    if prescription_id is not None:
        return _done(prescription_id, "reprocess")
    return RedirectResponse("/support/webhooks?done=reprocess", 303)


#: The confirm steps (void, retry, re-route, the patient's email) under the same prefix.
router.include_router(change_router)
#: Case notes (add, with a confirm step).
router.include_router(note_router)
#: Events out: delivery logs per endpoint and resend.
router.include_router(event_router)
