"""Admin: accepted pharmacies, prescribers and their platform credentials, region routing.

Every form POST checks the admin role and the CSRF token first (the router's
dependencies). A form with mistakes comes back with a message next to each field and
everything typed kept, except the prescriber's platform password, login and PIN: those are
write-only and never rendered, not even back into the form they were typed in.

Every change is recorded in the audit trail (:mod:`rxroute.admin.audit`); a pharmacy's and a
prescriber's page show their history, and :mod:`rxroute.admin.audit_pages` lists it all.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from rxroute.admin import audit, csv_import, prescriber_service, service
from rxroute.admin.api_clients import router as api_clients_router
from rxroute.admin.audit_pages import router as audit_router
from rxroute.admin.event_pages import router as events_router
from rxroute.admin.formulary_pages import router as formulary_router
from rxroute.admin.health_pages import router as health_router
from rxroute.admin.import_pages import router as import_router
from rxroute.admin.pharmacy_confirm import list_query
from rxroute.admin.pharmacy_confirm import router as confirm_router
from rxroute.admin.pharmacy_csv import values_of
from rxroute.admin.users import router as users_router
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.models import AuditEntity, Pharmacy, Prescriber, Prescription
from rxroute.web.deps import AdminPageUser, require_admin_page
from rxroute.web.forms import text_fields
from rxroute.web.security import CsrfGuard
from rxroute.web.templating import render

#: Admins only, and every POST carries the CSRF token (checked here). The admin forms
#: include the CSV uploads, so the guard reads bodies up to the import's size; a larger
#: declared body is refused before it is read, with the import's own words.
csrf_guard = CsrfGuard(
    max_body_bytes=csv_import.MAX_IMPORT_BYTES + csv_import.UPLOAD_SLACK,
    too_large=csv_import.TOO_LARGE,
)
router = APIRouter(
    prefix="/admin",
    include_in_schema=False,
    dependencies=[Depends(require_admin_page), Depends(csrf_guard)],
)

FLASHES = {
    "pharmacy-added": "Pharmacy added.",
    "pharmacy-saved": "Pharmacy saved.",
    "pharmacy-deactivated": "Pharmacy deactivated: patients no longer see it.",
    "pharmacy-reactivated": "Pharmacy reactivated: patients can choose it again.",
    "prescriber-added": "Prescriber added.",
    "prescriber-saved": "Prescriber saved.",
    "checked-ok": "Checked: everything the check can see is in place.",
    "checked-warn": "Checked, but not everything could be checked: see the health line.",
    "checked-fail": "Checked: a problem was found; see the health line.",
    "checked-withheld": (
        "Checked: the platform does not know this pharmacy's contact ID. It is now withheld: "
        "patients cannot find or choose it until an admin clears it."
    ),
    "cleared": "Cleared: patients can find and choose this pharmacy again.",
    "not-withheld": "This pharmacy was not withheld: nothing to clear.",
}
PAGE_SIZE = 50
#: The list's "Show" filter.
LIST_STATES = ("all", "active", "inactive", "withheld", "problems")


def _flash(request: Request) -> str | None:
    return FLASHES.get(request.query_params.get("done", ""))


def _regions(runtime: RuntimeDep) -> list[tuple[str, str]]:
    return sorted(runtime.settings.region_channels.items())


# --- index ------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def index(request: Request, session: SessionDep, user: AdminPageUser) -> HTMLResponse:
    counts = {
        "pharmacies": await session.scalar(select(func.count()).select_from(Pharmacy)) or 0,
        "active_pharmacies": await session.scalar(
            select(func.count()).select_from(Pharmacy).where(Pharmacy.active.is_(True))
        )
        or 0,
        "prescribers": await session.scalar(select(func.count()).select_from(Prescriber)) or 0,
        "prescriptions": await session.scalar(select(func.count()).select_from(Prescription)) or 0,
    }
    return render(request, "admin/index.html", {"counts": counts})


# --- pharmacies -------------------------------------------------------------------------


@router.get("/pharmacies", response_class=HTMLResponse)
async def pharmacies(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: AdminPageUser,
    region: Annotated[str, Query(max_length=8)] = "",
    q: Annotated[str, Query(max_length=500)] = "",
    state: Annotated[str, Query(max_length=10)] = "all",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    state = state if state in LIST_STATES else "all"
    found = await service.list_pharmacies(
        session,
        region=region.strip(),
        query=q,
        state=state,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    return render(
        request,
        "admin/pharmacies.html",
        {
            "found": found,
            "region": region.strip().upper(),
            "q": q,
            "state": state,
            "page": page,
            "pages": max(1, -(-found.total // PAGE_SIZE)),
            "regions": _regions(runtime),
            "flash": _flash(request),
        },
    )


async def _pharmacy_form(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    pharmacy: Pharmacy | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    history = await audit.history(session, AuditEntity.PHARMACY, pharmacy.id) if pharmacy else []
    return render(
        request,
        "admin/pharmacy_form.html",
        {
            "values": values,
            "errors": errors or {},
            "pharmacy": pharmacy,
            "regions": _regions(runtime),
            "flash": _flash(request),
            "audit_lines": history,
        },
        status_code=status_code,
    )


@router.get("/pharmacies/new", response_class=HTMLResponse)
async def new_pharmacy(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: AdminPageUser
) -> HTMLResponse:
    return await _pharmacy_form(request, session, runtime, values={"active": "yes"})


@router.post("/pharmacies/new", response_model=None)
async def create_pharmacy(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: AdminPageUser
) -> Response:
    form = await text_fields(request)
    saved, checked = await service.save_pharmacy(session, runtime.settings, form, actor_id=user.id)
    if saved is None:
        typed = {name: form.get(name, "") for name in service.PHARMACY_FIELDS}
        return await _pharmacy_form(
            request, session, runtime, values=typed, errors=checked.errors, status_code=422
        )
    return RedirectResponse(f"/admin/pharmacies/{saved.id}?done=pharmacy-added", 303)


# --- CSV import, export and template (before /pharmacies/{id}: "import" is no id) -------

router.include_router(import_router)


# --- one pharmacy -----------------------------------------------------------------------


async def _pharmacy(session: SessionDep, pharmacy_id: uuid.UUID) -> Pharmacy:
    pharmacy = await session.get(Pharmacy, pharmacy_id)
    if pharmacy is None:
        raise HTTPException(status_code=404, detail="no such pharmacy")
    return pharmacy


@router.get("/pharmacies/{pharmacy_id}", response_class=HTMLResponse)
async def edit_pharmacy(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: AdminPageUser,
    pharmacy_id: uuid.UUID,
) -> HTMLResponse:
    pharmacy = await _pharmacy(session, pharmacy_id)
    return await _pharmacy_form(
        request, session, runtime, values=values_of(pharmacy), pharmacy=pharmacy
    )


@router.post("/pharmacies/{pharmacy_id}", response_model=None)
async def update_pharmacy(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: AdminPageUser,
    pharmacy_id: uuid.UUID,
) -> Response:
    form = await text_fields(request)
    pharmacy = await _pharmacy(session, pharmacy_id)
    saved, checked = await service.save_pharmacy(
        session, runtime.settings, form, pharmacy, actor_id=user.id
    )
    if saved is None:
        typed = {name: form.get(name, "") for name in service.PHARMACY_FIELDS}
        return await _pharmacy_form(
            request,
            session,
            runtime,
            values=typed,
            errors=checked.errors,
            pharmacy=pharmacy,
            status_code=422,
        )
    return RedirectResponse(f"/admin/pharmacies/{saved.id}?done=pharmacy-saved", 303)


@router.post("/pharmacies/{pharmacy_id}/active", response_model=None)
async def set_active(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: AdminPageUser,
    pharmacy_id: uuid.UUID,
) -> Response:
    form = await text_fields(request)
    pharmacy = await _pharmacy(session, pharmacy_id)
    active = form.get("active") == "1"
    await service.set_pharmacy_active(
        session, pharmacy, active, actor_id=user.id, reason=form.get("reason", "")
    )
    done = "pharmacy-reactivated" if active else "pharmacy-deactivated"
    if form.get("back") == "list":
        # Back to the list as it was filtered (deactivating asks first: pharmacy_confirm).
        kept = list_query(form.get("back_query", ""))
        return RedirectResponse(f"/admin/pharmacies?{kept + '&' if kept else ''}done={done}", 303)
    return RedirectResponse(f"/admin/pharmacies/{pharmacy_id}?done={done}", 303)


# --- prescribers ------------------------------------------------------------------------


@router.get("/prescribers", response_class=HTMLResponse)
async def prescribers(request: Request, session: SessionDep, user: AdminPageUser) -> HTMLResponse:
    found = list(
        await session.scalars(select(Prescriber).order_by(Prescriber.full_name, Prescriber.id))
    )
    return render(
        request, "admin/prescribers.html", {"prescribers": found, "flash": _flash(request)}
    )


async def _prescriber_form(
    request: Request,
    session: SessionDep,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    prescriber: Prescriber | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    # Only whether each secret is set: never the value, not even encrypted.
    stored = {
        "platform_email": bool(prescriber and prescriber.platform_email_encrypted),
        "platform_password": bool(prescriber and prescriber.platform_password_encrypted),
        "signing_pin": bool(prescriber and prescriber.signing_pin_encrypted),
    }
    history = (
        await audit.history(session, AuditEntity.PRESCRIBER, prescriber.id) if prescriber else []
    )
    return render(
        request,
        "admin/prescriber_form.html",
        {
            "values": values,
            "errors": errors or {},
            "prescriber": prescriber,
            "stored": stored,
            "flash": _flash(request),
            "audit_lines": history,
        },
        status_code=status_code,
    )


def _typed_prescriber(form: dict[str, str]) -> dict[str, str]:
    return {name: form.get(name, "") for name in prescriber_service.PRESCRIBER_FIELDS}


@router.get("/prescribers/new", response_class=HTMLResponse)
async def new_prescriber(
    request: Request, session: SessionDep, user: AdminPageUser
) -> HTMLResponse:
    return await _prescriber_form(request, session, values={"active": "yes"})


@router.post("/prescribers/new", response_model=None)
async def create_prescriber(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: AdminPageUser
) -> Response:
    form = await text_fields(request)
    saved, checked = await prescriber_service.save_prescriber(
        session, runtime.secret_box, form, actor_id=user.id
    )
    if saved is None:
        return await _prescriber_form(
            request, session, values=_typed_prescriber(form), errors=checked.errors, status_code=422
        )
    return RedirectResponse(f"/admin/prescribers/{saved.id}?done=prescriber-added", 303)


async def _prescriber(session: SessionDep, prescriber_id: uuid.UUID) -> Prescriber:
    prescriber = await session.get(Prescriber, prescriber_id)
    if prescriber is None:
        raise HTTPException(status_code=404, detail="no such prescriber")
    return prescriber


@router.get("/prescribers/{prescriber_id}", response_class=HTMLResponse)
async def edit_prescriber(
    request: Request, session: SessionDep, user: AdminPageUser, prescriber_id: uuid.UUID
) -> HTMLResponse:
    prescriber = await _prescriber(session, prescriber_id)
    values = {
        "full_name": prescriber.full_name,
        "email": prescriber.email,
        "registration_number": prescriber.registration_number,
        "active": "yes" if prescriber.active else "",
    }
    return await _prescriber_form(request, session, values=values, prescriber=prescriber)


@router.post("/prescribers/{prescriber_id}", response_model=None)
async def update_prescriber(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: AdminPageUser,
    prescriber_id: uuid.UUID,
) -> Response:
    form = await text_fields(request)
    prescriber = await _prescriber(session, prescriber_id)
    saved, checked = await prescriber_service.save_prescriber(
        session, runtime.secret_box, form, prescriber, actor_id=user.id
    )
    if saved is None:
        return await _prescriber_form(
            request,
            session,
            values=_typed_prescriber(form),
            errors=checked.errors,
            prescriber=prescriber,
            status_code=422,
        )
    return RedirectResponse(f"/admin/prescribers/{saved.id}?done=prescriber-saved", 303)


# --- regions ----------------------------------------------------------------------------


@router.get("/regions", response_class=HTMLResponse)
async def regions(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: AdminPageUser
) -> HTMLResponse:
    rows = await service.region_overview(session, runtime.settings)
    env_value = json.dumps(dict(_regions(runtime)), separators=(",", ":"))
    logins = await prescriber_service.platform_logins(session, runtime.secret_box)
    return render(
        request,
        "admin/regions.html",
        {
            "rows": rows,
            "env_value": env_value,
            "logins": logins,
            "settings": runtime.settings,
            "platform_used": "erx" in runtime.settings.region_channels.values(),
        },
    )


#: The confirm step before deactivating a pharmacy, and the audit list, under the same prefix.
router.include_router(confirm_router)
#: The live "Check" of a pharmacy or prescriber, and clearing a withheld pharmacy.
router.include_router(health_router)
router.include_router(users_router)
router.include_router(audit_router)
#: Events out: the endpoints status events are sent to.
router.include_router(events_router)
#: The formulary prescribers pick medicines from.
router.include_router(formulary_router)
#: Integrating platforms' API keys.
router.include_router(api_clients_router)
