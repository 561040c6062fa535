"""Admin: the formulary prescribers pick medicines from - list, CSV import, deactivate.

The import is all-or-nothing like the pharmacies' (:mod:`rxroute.admin.csv_import`): every
row is checked first and a rejected row, named by line with each reason starting with its
column, means nothing is imported. Lines are not edited in place; deactivating one takes it
off the prescribers' list (prescriptions already written keep what they copied), and the
corrected line is imported. Every change is in the audit trail.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.admin import csv_import
from rxroute.auth.dependencies import SessionDep
from rxroute.formulary import service
from rxroute.web.deps import AdminPageUser, require_admin_page
from rxroute.web.security import CsrfGuard
from rxroute.web.templating import render

#: Admins only; every POST carries the CSRF token, read within the import's size (a larger
#: declared upload is refused unread, with the import's words).
upload_guard = CsrfGuard(
    max_body_bytes=csv_import.MAX_IMPORT_BYTES + csv_import.UPLOAD_SLACK,
    too_large=csv_import.TOO_LARGE,
)
router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(require_admin_page), Depends(upload_guard)],
)

FLASHES = {
    "deactivated": "Line deactivated: prescribers no longer see it.",
    "inactive": "That line was already inactive.",
}


async def _page(
    request: Request, session: SessionDep, *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    lines = await service.list_lines(session)
    return render(
        request,
        "admin/formulary.html",
        {
            "lines": lines,
            "active_count": sum(1 for line in lines if line.active),
            "columns": service.FIELDS,
            "max_mb": csv_import.MAX_IMPORT_BYTES // (1024 * 1024),
            "max_rows": csv_import.MAX_IMPORT_ROWS,
            "max_reported": csv_import.MAX_REPORTED_ROWS,
            "flash": FLASHES.get(request.query_params.get("done", "")),
            **extra,
        },
        status_code=status_code,
    )


@router.get("/formulary", response_class=HTMLResponse)
async def formulary(request: Request, session: SessionDep, user: AdminPageUser) -> HTMLResponse:
    return await _page(request, session)


@router.post("/formulary/import", response_model=None)
async def import_csv(request: Request, session: SessionDep, user: AdminPageUser) -> Response:
    uploaded = await csv_import.uploaded_file(request)
    if uploaded is None:
        return await _page(
            request, session, status_code=422, file_error="Choose a CSV file to upload."
        )
    data, filename = uploaded
    try:
        report = await service.import_lines(session, data, actor_id=user.id)
    except csv_import.ImportFileError as exc:
        return await _page(
            request,
            session,
            status_code=422,
            file_error=f"{exc} Nothing was imported.",
            filename=filename,
        )
    return await _page(
        request,
        session,
        status_code=200 if report.ok else 422,
        report=report,
        filename=filename,
    )


@router.post("/formulary/{item_id}/deactivate", response_model=None)
async def deactivate(
    request: Request, session: SessionDep, user: AdminPageUser, item_id: uuid.UUID
) -> Response:
    item = await service.get_line(session, item_id, for_update=True)
    if item is None:
        raise HTTPException(status_code=404, detail="no such formulary line")
    changed = await service.deactivate(session, item, actor_id=user.id)
    return RedirectResponse(
        f"/admin/formulary?done={'deactivated' if changed else 'inactive'}", 303
    )
