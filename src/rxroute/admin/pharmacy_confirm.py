"""Admin: the confirm step before a pharmacy is deactivated.

Deactivating hides the pharmacy from patients at once, so the button on the list and on the
pharmacy's page leads here first: the page names the pharmacy and its address and says how
many prescriptions are on their way to it (they are not moved: support re-routes them if
needed). The list's filter travels along and is kept after the change.
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from rxroute.auth.dependencies import SessionDep
from rxroute.models import Pharmacy, Prescription
from rxroute.prescriptions.lifecycle import CHANGEABLE, Status
from rxroute.web.deps import AdminPageUser, require_admin_page
from rxroute.web.security import csrf_guard
from rxroute.web.templating import render

#: Admins only, and every POST carries the CSRF token (checked here).
router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(require_admin_page), Depends(csrf_guard)],
)

#: The list's filter parameters, the only ones carried back to it.
LIST_PARAMETERS = ("q", "region", "state", "page")

#: On their way to a pharmacy: sent (or being sent), not yet dispensed, expired or voided.
ON_THEIR_WAY = sorted(status.value for status in CHANGEABLE - {Status.DRAFT})


def list_query(raw: str) -> str:
    """The list's filter as a query string, keeping only its own parameters."""
    kept = [(key, value[:500]) for key, value in parse_qsl(raw[:2000]) if key in LIST_PARAMETERS]
    return urlencode(kept)


@router.get("/pharmacies/{pharmacy_id}/deactivate", response_class=HTMLResponse)
async def confirm_deactivate(
    request: Request,
    session: SessionDep,
    user: AdminPageUser,
    pharmacy_id: uuid.UUID,
    back: Annotated[str, Query(max_length=10)] = "",
    back_query: Annotated[str, Query(max_length=2000)] = "",
) -> HTMLResponse:
    pharmacy = await session.get(Pharmacy, pharmacy_id)
    if pharmacy is None:
        raise HTTPException(status_code=404, detail="no such pharmacy")
    on_their_way = (
        await session.scalar(
            select(func.count())
            .select_from(Prescription)
            .where(Prescription.pharmacy_id == pharmacy.id, Prescription.status.in_(ON_THEIR_WAY))
        )
        or 0
    )
    to_list = back == "list"
    query = list_query(back_query) if to_list else ""
    if not to_list:
        return_url = f"/admin/pharmacies/{pharmacy.id}"
    else:
        return_url = f"/admin/pharmacies?{query}" if query else "/admin/pharmacies"
    return render(
        request,
        "admin/deactivate.html",
        {
            "pharmacy": pharmacy,
            "on_their_way": on_their_way,
            "back": "list" if to_list else "",
            "back_query": query,
            "return_url": return_url,
        },
    )
