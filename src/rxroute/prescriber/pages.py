"""A prescriber's pages: the prescriptions they wrote, patient search, writing a draft.

The router checks the prescriber role and every POST's CSRF token (its dependencies). The
patient search is a POST, like support's: what is typed is a patient's name, email or NHS
number, which must not land in a URL (browser history, access logs, Referer); results are
rendered in the POST's answer.

The write form works without JavaScript: one select per medicine line, an "add another"
button that comes back with one more line (and the chosen medicines' default quantity and
directions filled in), a "remove" button per line; ``prescriber.js`` fills the defaults in
as soon as a medicine is picked. A form with mistakes comes back with everything typed kept.
Writing calls :func:`~rxroute.prescriptions.writing.create_draft`, and the patient sends the
draft from their own pages.

An account with no prescriber record, or a deactivated one, gets a page saying so (and what
to do), never a 500.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.auth.dependencies import SessionDep
from rxroute.models import Patient, Prescriber
from rxroute.prescriber import service
from rxroute.prescriptions.errors import PrescriptionError
from rxroute.prescriptions.writing import MAX_ITEMS, create_draft
from rxroute.web.deps import PrescriberPageUser, require_prescriber_page
from rxroute.web.security import csrf_guard
from rxroute.web.templating import render

#: Prescribers only, and every POST carries the CSRF token (checked here).
router = APIRouter(
    prefix="/prescriber",
    include_in_schema=False,
    dependencies=[Depends(require_prescriber_page), Depends(csrf_guard)],
)

#: Fields of one submitted write form, at most: MAX_ITEMS lines and a few more.
_MAX_LINES_READ = MAX_ITEMS + 1


async def _home(
    request: Request,
    session: SessionDep,
    user: PrescriberPageUser,
    *,
    query: str = "",
    search: service.PatientSearch | None = None,
) -> HTMLResponse:
    writer = await service.writer_of(session, user)
    written = await service.written_by(session, user)
    return render(
        request,
        "prescriber/home.html",
        {
            "writer": writer,
            "written": written,
            "q": query[: service.MAX_QUERY_LENGTH],
            "search": search,
        },
    )


@router.get("", response_class=HTMLResponse)
async def home(request: Request, session: SessionDep, user: PrescriberPageUser) -> HTMLResponse:
    """The prescriptions they wrote and the patient search (a ``?q=`` is not searched)."""
    return await _home(request, session, user)


@router.post("/search", response_class=HTMLResponse)
async def search(
    request: Request,
    session: SessionDep,
    user: PrescriberPageUser,
    q: Annotated[str, Form(max_length=2000)] = "",
) -> HTMLResponse:
    """Home with the matching patients, in the answer: the query is in no URL."""
    writer = await service.writer_of(session, user)
    if not writer.can_write:
        return await _home(request, session, user)
    found = await service.search_patients(session, q)
    return await _home(request, session, user, query=q, search=found)


async def _can_write(session: SessionDep, user: PrescriberPageUser) -> Prescriber:
    writer = await service.writer_of(session, user)
    if writer.prescriber is None or writer.blocked is not None:
        raise HTTPException(status_code=403, detail=writer.blocked or service.NOT_LINKED)
    return writer.prescriber


async def _patient(session: SessionDep, patient_id: uuid.UUID) -> Patient:
    patient = await session.get(Patient, patient_id)
    if patient is None:
        raise HTTPException(status_code=404, detail="no such patient")
    return patient


async def _write_page(
    request: Request,
    session: SessionDep,
    patient: Patient,
    lines: list[service.LineForm],
    *,
    status_code: int = 200,
    **extra: Any,
) -> HTMLResponse:
    return render(
        request,
        "prescriber/write.html",
        {
            "patient": patient,
            "lines": lines,
            "formulary": await service.active_formulary(session),
            "max_items": MAX_ITEMS,
            **extra,
        },
        status_code=status_code,
    )


@router.get("/patients/{patient_id}/write", response_class=HTMLResponse)
async def write_form(
    request: Request, session: SessionDep, user: PrescriberPageUser, patient_id: uuid.UUID
) -> HTMLResponse:
    await _can_write(session, user)
    patient = await _patient(session, patient_id)
    return await _write_page(request, session, patient, [service.LineForm()])


@router.post("/patients/{patient_id}/write", response_model=None)
async def write(
    request: Request,
    session: SessionDep,
    user: PrescriberPageUser,
    patient_id: uuid.UUID,
    action: Annotated[str, Form(max_length=20)] = "write",
) -> Response:
    prescriber = await _can_write(session, user)
    patient = await _patient(session, patient_id)
    form = await request.form(max_files=0, max_fields=4 * _MAX_LINES_READ + 5)
    fields = {
        name: [value for value in form.getlist(name) if isinstance(value, str)]
        for name in ("medicine", "quantity", "directions")
    }
    lines, too_many = service.lines_from(
        fields["medicine"], fields["quantity"], fields["directions"]
    )
    formulary = await service.active_formulary(session)
    if action == "add" or action.startswith("remove-"):
        if action == "add" and len(lines) < MAX_ITEMS:
            lines.append(service.LineForm())
        elif action.startswith("remove-"):
            index = action.removeprefix("remove-")
            if index.isdigit() and int(index) < len(lines) and len(lines) > 1:
                del lines[int(index)]
        service.fill_defaults(lines, formulary)
        return await _write_page(request, session, patient, lines, error=too_many)
    items, error = service.check_lines(lines, formulary)
    if too_many is None and error is None:
        try:
            draft = await create_draft(session, patient=patient, prescriber=prescriber, items=items)
        except PrescriptionError as exc:
            error = exc.message
        else:
            return RedirectResponse(f"/prescriber/prescriptions/{draft.id}?written=1", 303)
    filled = service.fill_defaults(lines, formulary)
    return await _write_page(
        request,
        session,
        patient,
        lines,
        status_code=422,
        error=too_many or error,
        filled=filled,
    )


@router.get("/prescriptions/{prescription_id}", response_class=HTMLResponse)
async def written(
    request: Request, session: SessionDep, user: PrescriberPageUser, prescription_id: uuid.UUID
) -> HTMLResponse:
    """One prescription they wrote (another prescriber's is not found: the same answer)."""
    prescription = await service.written_one(session, user, prescription_id)
    if prescription is None:
        raise HTTPException(status_code=404, detail="no such prescription")
    return render(
        request,
        "prescriber/prescription.html",
        {"p": prescription, "written": request.query_params.get("written") == "1"},
    )
