"""Admin: import the pharmacy list from CSV (preview, then apply), export it, a template.

Uploading shows what the file would do - additions, changes, deactivations - and writes
nothing (:mod:`rxroute.admin.pharmacy_import`). The preview's "Apply" form carries the
same file back (compressed in a hidden field) with the plan's fingerprint; applying plans
again in its own transaction and, if anything differs from what was shown, shows the new
preview instead of applying. The export and the template have the import's columns.

Declared on the admin router before ``/pharmacies/{id}`` so "import" and "export.csv" are
not taken for an id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from rxroute.admin import csv_import
from rxroute.admin.pharmacy_csv import export_csv, pack, template_csv, unpack
from rxroute.admin.pharmacy_import import ImportPlan, apply_plan, plan_import
from rxroute.admin.service import PHARMACY_FIELDS
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.web.deps import AdminPageUser, require_admin_page
from rxroute.web.security import CsrfGuard
from rxroute.web.templating import render

#: Admins only; every POST carries the CSRF token, read within the import's size (the
#: apply form carries the file back, compressed).
upload_guard = CsrfGuard(
    max_body_bytes=csv_import.MAX_IMPORT_BYTES + csv_import.UPLOAD_SLACK,
    too_large=csv_import.TOO_LARGE,
)
router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(require_admin_page), Depends(upload_guard)],
)

CHANGED_SINCE_PREVIEW = (
    "The pharmacy list changed after your preview, so nothing was applied. This is what the "
    "file would do now: check it and apply again."
)


def _context(**extra: Any) -> dict[str, Any]:
    return {
        "columns": PHARMACY_FIELDS,
        "max_mb": csv_import.MAX_IMPORT_BYTES // (1024 * 1024),
        "max_rows": csv_import.MAX_IMPORT_ROWS,
        "max_reported": csv_import.MAX_REPORTED_ROWS,
        **extra,
    }


def _page(request: Request, status_code: int = 200, **extra: Any) -> HTMLResponse:
    return render(request, "admin/import.html", _context(**extra), status_code=status_code)


def _file_error(request: Request, message: str, filename: str = "") -> HTMLResponse:
    return _page(request, 422, file_error=f"{message} Nothing was imported.", filename=filename)


def _rejected(request: Request, plan: ImportPlan, filename: str) -> HTMLResponse:
    report = csv_import.ImportReport(rows=plan.rows, rejected=plan.rejected)
    return _page(request, 422, report=report, filename=filename)


def _preview(
    request: Request, plan: ImportPlan, data: bytes, filename: str, *, notice: str = ""
) -> HTMLResponse:
    return render(
        request,
        "admin/import_preview.html",
        _context(
            plan=plan,
            packed=pack(data),
            token=plan.fingerprint,
            filename=filename,
            notice=notice,
        ),
        status_code=409 if notice else 200,
    )


@router.get("/pharmacies/import", response_class=HTMLResponse)
async def import_form(request: Request, user: AdminPageUser) -> HTMLResponse:
    return _page(request)


@router.post("/pharmacies/import", response_model=None)
async def preview(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: AdminPageUser
) -> Response:
    """Check the file and show what it would do; nothing is written."""
    uploaded = await csv_import.uploaded_file(request)
    if uploaded is None:
        return _page(request, 422, file_error="Choose a CSV file to upload.")
    data, filename = uploaded
    whole_list = (await request.form()).get("whole_list") == "yes"
    try:
        plan = await plan_import(session, runtime.settings, data, deactivate_missing=whole_list)
    except csv_import.ImportFileError as exc:
        return _file_error(request, str(exc), filename)
    if not plan.ok:
        return _rejected(request, plan, filename)
    return _preview(request, plan, data, filename)


@router.post("/pharmacies/import/apply", response_model=None)
async def apply(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: AdminPageUser
) -> Response:
    """Apply the previewed plan: all of it, and only if it is still what was shown."""
    form = await request.form()
    content, token = form.get("content"), form.get("token")
    filename = str(form.get("filename") or "")[:200]
    if not isinstance(content, str) or not isinstance(token, str) or not content:
        return _file_error(request, "The preview did not come back; upload the file again.")
    whole_list = form.get("whole_list") == "yes"
    try:
        data = unpack(content)
        plan = await plan_import(
            session, runtime.settings, data, deactivate_missing=whole_list, for_update=True
        )
    except csv_import.ImportFileError as exc:
        return _file_error(request, str(exc), filename)
    if not plan.ok:
        return _rejected(request, plan, filename)
    if plan.fingerprint != token:
        return _preview(request, plan, data, filename, notice=CHANGED_SINCE_PREVIEW)
    applied = await apply_plan(session, plan, actor_id=user.id)
    return _page(request, applied=applied, filename=filename)


def _csv(text: str, filename: str) -> Response:
    return Response(
        content=text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/pharmacies/export.csv", response_model=None)
async def export(session: SessionDep, user: AdminPageUser) -> Response:
    """Every pharmacy, in the import's columns (it imports back unchanged)."""
    return _csv(await export_csv(session), "pharmacies.csv")


@router.get("/pharmacies/template.csv", response_model=None)
async def template(user: AdminPageUser) -> Response:
    return _csv(template_csv(), "pharmacies-template.csv")
