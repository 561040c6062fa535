"""The patient changes course: another pharmacy, or cancel, before it is dispensed.

Both go through a confirm step, as plain GET and POST forms so they work without
JavaScript:

* ``GET /prescriptions/{id}/change?region=..&pharmacy_id=..`` shows the confirm page, naming
  the new pharmacy and its address and what happens to the copy at the old one; without a
  pharmacy chosen (the form's "Search" button) it shows the prescription page with the
  search results. ``POST`` re-routes (the ledger withdraws the old delivery first) and
  queues the send job in the same transaction.
* ``GET /prescriptions/{id}/cancel`` says what cancelling does; ``POST`` cancels. The
  cancel command owns its transactions (the platform copy is voided before the answer
  says "cancelled"); when the platform cannot be reached nothing changes and the page says
  so.

The rules live in :mod:`rxroute.deliveries.commands`; a refusal is shown on the page with
its HTTP status, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.deliveries import commands
from rxroute.models import Pharmacy, Prescription
from rxroute.prescriptions import repository
from rxroute.prescriptions.errors import (
    ChannelUnavailable,
    Conflict,
    InvalidChoice,
    NotFound,
    PrescriptionError,
)
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.tasks import defer_send
from rxroute.runtime import Runtime
from rxroute.web.change_text import what_withdrawing_does
from rxroute.web.deps import PageUser, page_user
from rxroute.web.patient_detail import (
    MAX_QUERY,
    can_cancel,
    can_change,
    detail_url,
    friendly_field_error,
    not_found,
    own_prescription,
    parse_id,
    region_or_none,
    render_detail,
    shown_count,
)
from rxroute.web.security import csrf_guard
from rxroute.web.templating import render

#: Signed in, and every POST carries the CSRF token (checked here, before any handler).
router = APIRouter(include_in_schema=False, dependencies=[Depends(page_user), Depends(csrf_guard)])

#: What the patient reads when the platform could not be reached while cancelling.
UNREACHABLE = (
    "The e-prescription platform could not be reached, so nothing was changed: your "
    "prescription is as it was. Please try again in a minute."
)

Reason = Annotated[str, Form(max_length=2000)]


def _confirm_change(
    request: Request,
    runtime: Runtime,
    prescription: Prescription,
    pharmacy: Pharmacy,
    region: str,
    *,
    reason: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context: dict[str, Any] = {
        "p": prescription,
        "new": pharmacy,
        "region": region,
        "region_name": runtime.settings.region_shown(region).name,
        "old": prescription.pharmacy,
        "withdrawal": what_withdrawing_does(runtime, prescription, cancelling=False),
        "reason": reason,
        "error": error,
        "allowed": can_change(Status(prescription.status)),
    }
    return render(request, "patient/change_confirm.html", context, status_code=status_code)


def _confirm_cancel(
    request: Request,
    runtime: Runtime,
    prescription: Prescription,
    *,
    reason: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    status = Status(prescription.status)
    context: dict[str, Any] = {
        "p": prescription,
        "withdrawal": what_withdrawing_does(runtime, prescription, cancelling=True),
        "reason": reason,
        "error": error,
        "allowed": can_cancel(status),
    }
    return render(request, "patient/cancel_confirm.html", context, status_code=status_code)


@dataclass(frozen=True)
class _Choice:
    """The checked destination (pharmacy and region), or the field errors to show."""

    pharmacy: Pharmacy | None = None
    region: str = ""
    errors: dict[str, str] = field(default_factory=dict)


async def _destination(
    session: AsyncSession, runtime: Runtime, prescription: Prescription, region: str, raw_id: str
) -> _Choice:
    """The chosen pharmacy and region, checked as the re-route will check them."""
    pharmacy_id = parse_id(raw_id.strip())
    if pharmacy_id is None:
        return _Choice(errors={"pharmacy_id": "Choose a pharmacy from the list."})
    try:
        chosen = await commands.choose_destination(session, runtime, region, pharmacy_id)
    except InvalidChoice as exc:
        name = exc.field if exc.field in ("region", "pharmacy_id") else "pharmacy_id"
        return _Choice(errors={name: friendly_field_error(name, exc.message)})
    if chosen.pharmacy.id == prescription.pharmacy_id:
        return _Choice(
            errors={"pharmacy_id": "It is already going to this pharmacy; choose another one."}
        )
    return _Choice(pharmacy=chosen.pharmacy, region=chosen.region)


@router.get(
    "/prescriptions/{prescription_id}/change", response_class=HTMLResponse, response_model=None
)
async def change_page(
    request: Request,
    prescription_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    region: str = "",
    q: str = "",
    pharmacy_id: str = "",
    choose: str = "",
    action: str = "",
    shown: str = "",
) -> Response:
    """The change form's target: search results, or the confirm step for the chosen one."""
    found = await own_prescription(request, session, user, prescription_id)
    if not isinstance(found, Prescription):
        return found
    prescription = found
    status = Status(prescription.status)
    region_code = region_or_none(runtime, region)
    query = q[:MAX_QUERY]
    if not can_change(status):
        return await render_detail(
            request,
            session,
            runtime,
            user,
            prescription,
            error=f"This prescription is {status.label.lower()}, so its pharmacy cannot be "
            "changed.",
            status_code=409,
        )
    picked = choose.strip() or pharmacy_id.strip()
    if shown and not choose.strip():
        action = "search"  # "Show more pharmacies" (no JavaScript)
    if not picked or (action == "search" and not choose.strip()):
        wanted = action not in ("", "search")
        return await render_detail(
            request,
            session,
            runtime,
            user,
            prescription,
            region=region_code,
            query=query,
            searched=True,
            shown=shown_count(shown[:5]),
            errors={"pharmacy_id": "Choose a pharmacy from the list."} if wanted else None,
            status_code=422 if wanted else 200,
        )
    choice = await _destination(session, runtime, prescription, region.strip().upper(), picked)
    if choice.pharmacy is None:
        return await render_detail(
            request,
            session,
            runtime,
            user,
            prescription,
            region=region_code,
            query=query,
            searched=True,
            errors=choice.errors,
            status_code=422,
        )
    return _confirm_change(request, runtime, prescription, choice.pharmacy, choice.region)


@router.post("/prescriptions/{prescription_id}/change", response_model=None)
async def change(
    request: Request,
    prescription_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    region: Annotated[str, Form(max_length=50)] = "",
    pharmacy_id: Annotated[str, Form(max_length=100)] = "",
    reason: Reason = "",
) -> Response:
    """Confirmed: re-route, and queue the send job in the same transaction."""
    found = await own_prescription(request, session, user, prescription_id)
    if not isinstance(found, Prescription):
        return found
    prescription = found
    region_code = region.strip().upper()
    choice = await _destination(session, runtime, prescription, region_code, pharmacy_id)
    pharmacy = choice.pharmacy
    if pharmacy is None:
        return await render_detail(
            request,
            session,
            runtime,
            user,
            prescription,
            region=region_or_none(runtime, region_code),
            searched=True,
            errors=choice.errors,
            status_code=422,
        )
    # reroute checks everything before it changes anything: a refusal leaves nothing to
    # roll back, and the page is rendered from this same session.
    try:
        await commands.reroute(
            session,
            runtime,
            user,
            prescription.id,
            region=choice.region,
            pharmacy_id=pharmacy.id,
            reason=reason,
        )
    except NotFound:
        return not_found(request)
    except PrescriptionError as exc:
        fresh = await repository.get_visible(session, user, prescription.id)
        assert fresh is not None
        return _confirm_change(
            request,
            runtime,
            fresh,
            pharmacy,
            choice.region,
            reason=reason[:500],
            error=_sentence(exc),
            status_code=exc.status_code,
        )
    await defer_send(session, prescription.id)
    return RedirectResponse(detail_url(prescription.id, changed="1"), status_code=303)


@router.get(
    "/prescriptions/{prescription_id}/cancel", response_class=HTMLResponse, response_model=None
)
async def cancel_page(
    request: Request,
    prescription_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
) -> Response:
    """The confirm step: what cancelling does, an optional reason, and the button."""
    found = await own_prescription(request, session, user, prescription_id)
    if not isinstance(found, Prescription):
        return found
    status = Status(found.status)
    if not can_cancel(status):
        return _confirm_cancel(
            request,
            runtime,
            found,
            error=f"This prescription is {status.label.lower()}, so it cannot be cancelled.",
            status_code=409,
        )
    return _confirm_cancel(request, runtime, found)


@router.post("/prescriptions/{prescription_id}/cancel", response_model=None)
async def cancel(
    request: Request,
    prescription_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    user: PageUser,
    reason: Reason = "",
) -> Response:
    """Confirmed: take every live copy back, then the prescription is cancelled."""
    found = await own_prescription(request, session, user, prescription_id)
    if not isinstance(found, Prescription):
        return found
    if Status(found.status) is Status.DRAFT:
        # Not yet sent: the patient has nothing to cancel (the page offers no button).
        return _confirm_cancel(
            request,
            runtime,
            found,
            error="This prescription has not been sent, so there is nothing to cancel.",
            status_code=409,
        )
    try:
        await commands.cancel(runtime, user, found.id, reason=reason)
    except NotFound:
        return not_found(request)
    except PrescriptionError as exc:
        fresh = await repository.get_visible(session, user, found.id)
        assert fresh is not None
        return _confirm_cancel(
            request,
            runtime,
            fresh,
            reason=reason[:500],
            error=_sentence(exc),
            status_code=exc.status_code,
        )
    return RedirectResponse(detail_url(found.id), status_code=303)


def _sentence(error: PrescriptionError) -> str:
    """The refusal as the patient reads it: the command's words, as a sentence."""
    if isinstance(error, ChannelUnavailable):
        return UNREACHABLE
    text = error.message
    if error.field:
        text = text.split(": ", 1)[-1]
    if isinstance(error, Conflict) and not text.endswith("."):
        text += "."
    return text[:1].upper() + text[1:]
