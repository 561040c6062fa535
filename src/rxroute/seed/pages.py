"""The demo patient's "add demo prescriptions" button, in development only.

Trying the demo, a patient sends the six seeded drafts and then has nothing left to send.
This gives the signed-in patient fresh drafts, written by the same code as
``rxroute seed --patient`` (:func:`rxroute.seed.service.add_patient_drafts`, which uses the
one ``create_draft``).

The route exists only when ``RXROUTE_ENVIRONMENT`` is ``development``: in staging and
production it is not in the app at all (404), and the patient page shows no button
(``app.state.demo_drafts``, read by ``patient/_demo_drafts.html``). Like every page POST it
is guarded by its router: a signed-in patient, and the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import RedirectResponse, Response

from rxroute.auth.dependencies import SessionDep
from rxroute.config import Environment, Settings
from rxroute.models import Patient, Role, User
from rxroute.seed import data
from rxroute.seed.service import add_patient_drafts
from rxroute.web.deps import page_roles
from rxroute.web.security import csrf_guard

#: Where the button posts, and where the drafts then appear.
DEMO_DRAFTS_PATH = "/demo/prescriptions"
PATIENT_LIST = "/prescriptions"

require_patient_page = page_roles(Role.PATIENT)

router = APIRouter(
    include_in_schema=False,
    dependencies=[Depends(require_patient_page), Depends(csrf_guard)],
)


@router.post(DEMO_DRAFTS_PATH, response_model=None)
async def add_demo_prescriptions(
    session: SessionDep, user: Annotated[User, Depends(require_patient_page)]
) -> Response:
    patient = await session.get(Patient, user.patient_id) if user.patient_id else None
    if patient is None:
        # A patient login with no patient record: nothing to give drafts to.
        return RedirectResponse(PATIENT_LIST, status_code=303)
    added = await add_patient_drafts(session, patient, data.PATIENT_DRAFTS_DEFAULT)
    # To the block itself, where the page says how many were added.
    return RedirectResponse(f"{PATIENT_LIST}?demo_added={added}#demo-drafts", status_code=303)


def install(app: FastAPI, settings: Settings) -> None:
    """Add the route, and tell the patient page to show the button, in development only."""
    app.state.demo_drafts = settings.environment is Environment.DEVELOPMENT
    if app.state.demo_drafts:
        app.include_router(router)
