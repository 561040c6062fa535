"""Admin: where rxroute's status events go. List, add, disable and enable endpoints.

An added endpoint gets a fresh ``whsec_`` secret, shown once on the page that confirms it
(never in a URL, never again after): the receiving platform configures its verifier with it.
The default endpoint comes from ``RXROUTE_EVENTS_URL``; it can be disabled here too.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.events import console
from rxroute.events import endpoints as service
from rxroute.events.catalogue import ALL_EVENT_TYPES
from rxroute.models import EventEndpoint
from rxroute.web.deps import AdminPageUser
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

FLASHES = {
    "endpoint-disabled": "Endpoint disabled: it gets no new events; its waiting ones are kept.",
    "endpoint-enabled": "Endpoint enabled: its waiting events are sent within a minute, in order.",
}


@router.get("/events", response_class=HTMLResponse)
async def endpoints(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: AdminPageUser
) -> HTMLResponse:
    summaries = await console.endpoint_summaries(session, runtime.settings)
    return render(
        request,
        "admin/events.html",
        {
            "summaries": summaries,
            "flash": FLASHES.get(request.query_params.get("done", "")),
        },
    )


def _form_page(
    request: Request, form: service.EndpointForm, *, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "admin/event_form.html",
        {"form": form, "types": [t.value for t in ALL_EVENT_TYPES]},
        status_code=status_code,
    )


@router.get("/events/new", response_class=HTMLResponse)
async def new_endpoint(request: Request, user: AdminPageUser) -> HTMLResponse:
    return _form_page(request, service.EndpointForm())


@router.post("/events/new", response_model=None)
async def create_endpoint(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: AdminPageUser
) -> Response:
    # CSRF and the admin role are checked by the admin router this router is included in.
    submitted = await request.form(max_files=0, max_fields=40)
    url, description = submitted.get("url", ""), submitted.get("description", "")
    form = service.check_form(
        runtime.settings,
        url if isinstance(url, str) else "",
        description if isinstance(description, str) else "",
        [value for value in submitted.getlist("event_types") if isinstance(value, str)],
    )
    if form.errors:
        return _form_page(request, form, status_code=422)
    endpoint, secret = await service.create_endpoint(session, runtime.secret_box, form)
    page = render(
        request,
        "admin/event_created.html",
        {"endpoint": endpoint, "secret": secret},
        status_code=201,
    )
    page.headers["Cache-Control"] = "no-store"  # the secret is on this page, once
    return page


@router.post("/events/{endpoint_id}/active", response_model=None)
async def set_active(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: AdminPageUser,
    endpoint_id: uuid.UUID,
) -> Response:
    submitted = await request.form(max_files=0, max_fields=10)
    endpoint = await session.get(EventEndpoint, endpoint_id)
    if endpoint is None:
        raise HTTPException(status_code=404, detail="no such event endpoint")
    active = submitted.get("active") == "1"
    await service.set_active(session, endpoint, active)
    done = "endpoint-enabled" if active else "endpoint-disabled"
    return RedirectResponse(f"/admin/events?done={done}", 303)
