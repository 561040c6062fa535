"""Admin: the "Check" buttons of a pharmacy and a prescriber, and clearing a withheld one.

A check asks the platform (:mod:`rxroute.admin.health`), so the handler first ends the
request's own transaction - it has only read who is signed in - and the check opens its
own short ones around the call: no transaction stays open while the platform answers. The
result is on the row (the health badge), and the page comes back with a line saying so;
from the list, to the same filtered list.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from rxroute.admin import health
from rxroute.admin.pharmacy_confirm import list_query
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.models import Pharmacy
from rxroute.web.deps import AdminPageUser, require_admin_page
from rxroute.web.forms import text_fields
from rxroute.web.security import csrf_guard

#: Admins only, and every POST carries the CSRF token (checked here).
router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(require_admin_page), Depends(csrf_guard)],
)

MAX_REASON = 500


def _back(form: dict[str, str], list_url: str, detail_url: str, done: str) -> RedirectResponse:
    """Back to the (filtered) list the button was on, or to the item's page."""
    if form.get("back") == "list":
        kept = list_query(form.get("back_query", ""))
        return RedirectResponse(f"{list_url}?{kept + '&' if kept else ''}done={done}", 303)
    return RedirectResponse(f"{detail_url}?done={done}", 303)


@router.post("/pharmacies/{pharmacy_id}/check", response_model=None)
async def check_pharmacy(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: AdminPageUser,
    pharmacy_id: uuid.UUID,
) -> Response:
    form = await text_fields(request)
    actor = user.id
    # The request's transaction has only read the session: end it before the platform call.
    await session.commit()
    try:
        result = await health.check_pharmacy(runtime, pharmacy_id, actor_id=actor)
    except health.NotFound as exc:
        raise HTTPException(status_code=404, detail="no such pharmacy") from exc
    done = "checked-withheld" if result.withheld else f"checked-{result.status.value}"
    return _back(form, "/admin/pharmacies", f"/admin/pharmacies/{pharmacy_id}", done)


@router.post("/pharmacies/{pharmacy_id}/clear", response_model=None)
async def clear_pharmacy(
    request: Request,
    session: SessionDep,
    user: AdminPageUser,
    pharmacy_id: uuid.UUID,
) -> Response:
    form = await text_fields(request)
    pharmacy = await session.get(Pharmacy, pharmacy_id, with_for_update=True)
    if pharmacy is None:
        raise HTTPException(status_code=404, detail="no such pharmacy")
    reason = " ".join(form.get("reason", "").split())[:MAX_REASON]
    cleared = await health.clear_withheld(session, pharmacy, actor_id=user.id, reason=reason)
    done = "cleared" if cleared else "not-withheld"
    return _back(form, "/admin/pharmacies", f"/admin/pharmacies/{pharmacy_id}", done)


@router.post("/prescribers/{prescriber_id}/check", response_model=None)
async def check_prescriber(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: AdminPageUser,
    prescriber_id: uuid.UUID,
) -> Response:
    form = await text_fields(request)
    actor = user.id
    # The request's transaction has only read the session: end it before the platform call.
    await session.commit()
    try:
        result = await health.check_prescriber(runtime, prescriber_id, actor_id=actor)
    except health.NotFound as exc:
        raise HTTPException(status_code=404, detail="no such prescriber") from exc
    done = f"checked-{result.status.value}"
    return _back(form, "/admin/prescribers", f"/admin/prescribers/{prescriber_id}", done)
