"""Support's confirm steps: void, retry, re-route (change the pharmacy), change the
patient's email, and add a note, each with what it does and (but the note) a reason.

The case page's buttons lead here (GET); the confirm page names what will happen (the
pharmacy and its address for a re-route, what becomes of the copy at the current pharmacy,
the address status emails will go to) and asks for a reason (field ``#action-reason``),
which goes into the history with the staff actor. Void and retry are performed by
:mod:`rxroute.support.pages`, the note by :mod:`rxroute.support.note_pages`; the re-route
(through :func:`rxroute.deliveries.commands.reroute`, so the ledger's rules hold) and the
email change are performed here. A refusal comes back on the confirm page with its HTTP
status and the command's words.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.deliveries import commands
from rxroute.models import Patient, Pharmacy, Prescription, User
from rxroute.pharmacies import repository as pharmacy_repository
from rxroute.prescriptions import repository
from rxroute.prescriptions.errors import InvalidChoice, NotFound, PrescriptionError
from rxroute.prescriptions.lifecycle import CHANGEABLE, Status
from rxroute.prescriptions.tasks import defer_send
from rxroute.runtime import Runtime
from rxroute.support import service
from rxroute.web.change_text import what_withdrawing_does
from rxroute.web.deps import StaffPageUser, require_staff_page
from rxroute.web.security import csrf_guard
from rxroute.web.templating import render

#: Support or admin only, and every POST carries the CSRF token (checked here).
router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(require_staff_page), Depends(csrf_guard)],
)

#: Pharmacies listed per search on the re-route page.
RESULTS = 20
#: What a missing reason is told; the same words the commands use.
REASON_REQUIRED = "reason: say why, in a few words"

ACTIONS = ("void", "retry", "reroute", "email", "note")


def can_reroute(status: Status) -> bool:
    return status in CHANGEABLE and status is not Status.DRAFT


def reason_given(raw: str) -> bool:
    return bool(" ".join(raw.split()))


async def _prescription(
    session: AsyncSession, user: User, prescription_id: uuid.UUID
) -> Prescription:
    found = await repository.get_visible(session, user, prescription_id)
    if found is None:
        raise HTTPException(status_code=404, detail="prescription not found")
    return found


def _uuid_or_none(raw: str) -> uuid.UUID | None:
    """A typed id that is not a UUID is "no pharmacy chosen", answered by the command."""
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        return None


def _allowed(action: str, status: Status) -> bool:
    if action == "void":
        return not status.is_final
    if action == "retry":
        return status is Status.FAILED
    if action in ("email", "note"):
        return True
    return can_reroute(status)


async def render_confirm(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    prescription_id: uuid.UUID,
    action: str,
    *,
    reason: str = "",
    error: str | None = None,
    status_code: int = 200,
    pharmacy: Pharmacy | None = None,
    region: str = "",
    email: str = "",
    body: str = "",
) -> HTMLResponse:
    """The confirm page of ``action`` (void, retry, email, note, or the re-route's last step)."""
    assert action in ACTIONS
    prescription = await _prescription(session, user, prescription_id)
    status = Status(prescription.status)
    context: dict[str, Any] = {
        "p": prescription,
        "action": action,
        "allowed": _allowed(action, status),
        "withdrawal": what_withdrawing_does(runtime, prescription, cancelling=action == "void"),
        "reason": reason[:500],
        "error": error,
        "new": pharmacy,
        "region": region,
        "channel": runtime.settings.channel_for_region(region) if region else None,
        "email": email[:320],
        "body": body,
        "patient": (
            await session.get(Patient, prescription.patient_id) if action == "email" else None
        ),
    }
    if error is None and not context["allowed"]:
        context["error"] = f"Not possible now: this prescription is {status.value}."
        status_code = 409
    return render(request, "support/confirm.html", context, status_code=status_code)


async def _choose(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    prescription_id: uuid.UUID,
    *,
    region: str,
    query: str,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The re-route's first step: a region and a search over its active pharmacies."""
    prescription = await _prescription(session, user, prescription_id)
    status = Status(prescription.status)
    regions = sorted(runtime.settings.region_channels.items())
    code = region if runtime.settings.channel_for_region(region) else (prescription.region or "")
    results = await pharmacy_repository.search(session, code, query, limit=RESULTS) if code else []
    allowed = can_reroute(status)
    if error is None and not allowed:
        error = f"Not possible now: this prescription is {status.value}."
        status_code = 409
    return render(
        request,
        "support/reroute.html",
        {
            "p": prescription,
            "regions": regions,
            "region": code,
            "q": query,
            "results": results,
            "allowed": allowed,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/prescriptions/{prescription_id}/void", response_class=HTMLResponse)
async def confirm_void(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
) -> HTMLResponse:
    return await render_confirm(request, session, runtime, user, prescription_id, "void")


@router.get("/prescriptions/{prescription_id}/retry", response_class=HTMLResponse)
async def confirm_retry(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
) -> HTMLResponse:
    return await render_confirm(request, session, runtime, user, prescription_id, "retry")


@router.get("/prescriptions/{prescription_id}/reroute", response_class=HTMLResponse)
async def reroute_page(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
    region: Annotated[str, Query(max_length=8)] = "",
    q: Annotated[str, Query(max_length=100)] = "",
    pharmacy_id: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    """Choose a pharmacy (region and search), then the confirm step naming it."""
    code = region.strip().upper()
    if not pharmacy_id.strip():
        return await _choose(request, session, runtime, user, prescription_id, region=code, query=q)
    try:
        destination = await commands.choose_destination(
            session, runtime, code, _uuid_or_none(pharmacy_id)
        )
    except InvalidChoice as exc:
        return await _choose(
            request,
            session,
            runtime,
            user,
            prescription_id,
            region=code,
            query=q,
            error=exc.message,
            status_code=exc.status_code,
        )
    return await render_confirm(
        request,
        session,
        runtime,
        user,
        prescription_id,
        "reroute",
        pharmacy=destination.pharmacy,
        region=destination.region,
    )


@router.post("/prescriptions/{prescription_id}/reroute", response_model=None)
async def reroute(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
    region: Annotated[str, Form(max_length=50)] = "",
    pharmacy_id: Annotated[str, Form(max_length=100)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Confirmed: re-route (earlier deliveries withdrawn first) and queue the send job."""
    code = region.strip().upper()
    chosen = _uuid_or_none(pharmacy_id)
    try:
        # Checks everything before it changes anything: a refusal leaves nothing to roll
        # back, and the page is rendered from this same session.
        await commands.reroute(
            session,
            runtime,
            user,
            prescription_id,
            region=code,
            pharmacy_id=chosen,
            reason=reason,
        )
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=exc.message) from exc
    except PrescriptionError as exc:
        if exc.field in ("region", "pharmacy_id"):
            return await _choose(
                request,
                session,
                runtime,
                user,
                prescription_id,
                region=code,
                query="",
                error=exc.message,
                status_code=exc.status_code,
            )
        pharmacy = await session.get(Pharmacy, chosen) if chosen else None
        return await render_confirm(
            request,
            session,
            runtime,
            user,
            prescription_id,
            "reroute",
            reason=reason,
            error=exc.message,
            status_code=exc.status_code,
            pharmacy=pharmacy,
            region=code,
        )
    await defer_send(session, prescription_id)
    return RedirectResponse(f"/support/prescriptions/{prescription_id}?done=rerouted", 303)


@router.get("/prescriptions/{prescription_id}/email", response_class=HTMLResponse)
async def confirm_email(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
) -> HTMLResponse:
    """The patient's current address, the new one to type, and a reason."""
    return await render_confirm(request, session, runtime, user, prescription_id, "email")


@router.post("/prescriptions/{prescription_id}/email", response_model=None)
async def change_email(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
    email: Annotated[str, Form(max_length=400)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Confirmed: the patient's contact address changes; the reason goes into the history."""
    try:
        await service.change_patient_email(
            session, user, prescription_id, email=email, reason=reason
        )
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=exc.message) from exc
    except PrescriptionError as exc:
        return await render_confirm(
            request,
            session,
            runtime,
            user,
            prescription_id,
            "email",
            reason=reason,
            email=email,
            error=exc.message,
            status_code=exc.status_code,
        )
    return RedirectResponse(f"/support/prescriptions/{prescription_id}?done=email", 303)
