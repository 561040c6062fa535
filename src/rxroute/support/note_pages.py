"""Support's case notes: written on the case page, confirmed, then kept (append-only).

The case page's form posts the note here; the first answer is the confirm step (the note as
it will be kept, and that it cannot be edited or deleted), whose button posts it again with
``confirm=yes``. Success redirects to the case page (POST/redirect/GET). CSRF and the staff
role are checked by the support router this router is included in. The note's text is PHI:
it is never logged and never put in a URL.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.prescriptions.errors import NotFound, PrescriptionError
from rxroute.support import notes
from rxroute.support.change_pages import render_confirm
from rxroute.web.deps import StaffPageUser

router = APIRouter(include_in_schema=False)


@router.post("/prescriptions/{prescription_id}/notes", response_model=None)
async def add_note(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: StaffPageUser,
    prescription_id: uuid.UUID,
    body: Annotated[str, Form(max_length=notes.MAX_NOTE * 2)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        if confirm != "yes":
            cleaned = notes.clean_body(body)
            return await render_confirm(
                request, session, runtime, user, prescription_id, "note", body=cleaned
            )
        await notes.add_note(session, user, prescription_id, body)
    except NotFound as exc:
        raise HTTPException(status_code=404, detail=exc.message) from exc
    except PrescriptionError as exc:
        return await render_confirm(
            request,
            session,
            runtime,
            user,
            prescription_id,
            "note",
            body=body[: notes.MAX_NOTE * 2],
            error=exc.message,
            status_code=exc.status_code,
        )
    return RedirectResponse(f"/support/prescriptions/{prescription_id}?done=noted#notes", 303)
