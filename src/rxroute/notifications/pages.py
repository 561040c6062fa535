"""The page an email's unsubscribe link opens: confirm, then stop the patient's emails.

Opening the link (GET) changes nothing: mail scanners and link previews fetch every link in
an email, and must not unsubscribe anyone. The page's button posts the form, which repeats
the link's token in a hidden ``nonce`` field that must equal the token in the URL (as the
pharmacy's confirmation page does). A mail provider's one-click unsubscribe (RFC 8058: a
POST with ``List-Unsubscribe=One-Click``, from the ``List-Unsubscribe-Post`` header) works
too. The signed token is the credential: there is no account to sign in to, so the routes
are public (see ``tests/web/test_route_table.py``). The page names no one: whoever holds
the link learns nothing from it.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.channels.email.links import LinkInvalid
from rxroute.models import Patient
from rxroute.notifications import service
from rxroute.notifications.links import read_unsubscribe_token
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

ONE_CLICK = "One-Click"


def _private(response: Response) -> Response:
    # The token is a credential: keep it out of caches and out of Referer headers.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _invalid(request: Request) -> Response:
    page = render(
        request,
        "pharmacy/link_error.html",
        {
            "heading": "This link is not valid",
            "message": "The link may have been cut short or changed. Open it again from the "
            "email; if it still does not work, contact the clinic that prescribed for you.",
        },
        status_code=400,
    )
    return _private(page)


@router.get("/notifications/unsubscribe/{token}", response_class=HTMLResponse, response_model=None)
async def unsubscribe_page(
    request: Request, token: str, session: SessionDep, runtime: RuntimeDep, done: str = ""
) -> Response:
    try:
        patient_id = read_unsubscribe_token(runtime.settings, token)
    except LinkInvalid:
        return _invalid(request)
    patient = await session.get(Patient, patient_id)
    if patient is None:
        return _invalid(request)
    page = render(
        request,
        "notifications/unsubscribe.html",
        {
            "token": token,
            "opted_out": patient.notifications_opt_out,
            "just_done": done == "1" and patient.notifications_opt_out,
        },
    )
    return _private(page)


@router.post("/notifications/unsubscribe/{token}", response_model=None)
async def unsubscribe(
    request: Request,
    token: str,
    session: SessionDep,
    runtime: RuntimeDep,
    # No length limits here: a bad form is answered by the page below, not a JSON 422.
    nonce: Annotated[str, Form()] = "",
    one_click: Annotated[str, Form(alias="List-Unsubscribe")] = "",
) -> Response:
    try:
        patient_id = read_unsubscribe_token(runtime.settings, token)
    except LinkInvalid:
        return _invalid(request)
    from_page = hmac.compare_digest(nonce.encode(), token.encode())
    if not from_page and one_click != ONE_CLICK:
        page = render(
            request,
            "pharmacy/link_error.html",
            {
                "heading": "Please unsubscribe from the page",
                "message": "Open the link from the email and press “Stop these emails” on "
                "that page.",
            },
            status_code=403,
        )
        return _private(page)
    try:
        await service.opt_out(session, patient_id)
    except LookupError:
        return _invalid(request)
    if not from_page:
        return _private(Response(status_code=200))
    return _private(RedirectResponse(f"/notifications/unsubscribe/{token}?done=1", 303))
