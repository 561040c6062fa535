"""Support console: events out. Each endpoint's delivery log, and a resend per delivery.

The resend is a POST form with the CSRF token, recorded with who asked and when; success
redirects back to the endpoint's log with a fixed flash message (POST/redirect/GET), a
refusal re-renders the log with the reason.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.events import console
from rxroute.events.delivery import FLAG_AFTER
from rxroute.models import EventDelivery
from rxroute.prescriptions.errors import NotFound, PrescriptionError
from rxroute.web.deps import StaffPageUser
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

FLASHES = {"resend": "The event will be sent again shortly, after any earlier ones still due."}
FLAG_MINUTES = int(FLAG_AFTER.total_seconds() // 60)


@router.get("/events", response_class=HTMLResponse)
async def events_overview(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: StaffPageUser
) -> HTMLResponse:
    summaries = await console.endpoint_summaries(session, runtime.settings)
    return render(
        request,
        "support/events.html",
        {"summaries": summaries, "flag_minutes": FLAG_MINUTES},
    )


async def _log_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    endpoint_id: uuid.UUID,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        log = await console.endpoint_log(session, runtime.settings, endpoint_id)
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=exc.message) from exc
    return render(
        request,
        "support/event_log.html",
        {
            "log": log,
            "s": log.summary,
            "flag_minutes": FLAG_MINUTES,
            "flash": FLASHES.get(request.query_params.get("done", "")),
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/events/endpoints/{endpoint_id}", response_class=HTMLResponse)
async def endpoint_log(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    endpoint_id: uuid.UUID,
) -> HTMLResponse:
    return await _log_page(request, session, runtime, endpoint_id)


@router.post("/events/deliveries/{delivery_id}/resend", response_model=None)
async def resend(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    delivery_id: uuid.UUID,
) -> Response:
    # CSRF and the staff role are checked by the support router this router is included in.
    try:
        delivery = await console.request_resend(session, runtime.settings, user, delivery_id)
    except PrescriptionError as exc:
        if isinstance(exc, NotFound):
            raise HTTPException(status_code=404, detail=exc.message) from exc
        found = await session.get(EventDelivery, delivery_id)
        assert found is not None
        return await _log_page(
            request,
            session,
            runtime,
            found.endpoint_id,
            error=exc.message,
            status_code=exc.status_code,
        )
    return RedirectResponse(f"/support/events/endpoints/{delivery.endpoint_id}?done=resend", 303)
