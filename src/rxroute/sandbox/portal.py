"""The pharmacy portal: the one-time link in the pharmacy's email, to print and dispense.

The pharmacy must choose its pharmacy group first, as on the real platform (staging offers
only "All Other Pharmacies" and "Boots"); a wrong group finds nothing, a used link is 410.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .http import BadRequest, form_body
from .pages import render
from .records import DISPENSED, EXPIRED, ISSUED, PHARMACY_GROUPS, VOIDED, Prescription
from .state import Sandbox


def add_portal_routes(app: FastAPI, sandbox: Sandbox) -> None:
    """Register ``/portal/{token}`` and its print and dispense forms on ``app``."""

    def portal_gone(prescription: Prescription | None) -> Response | None:
        if prescription is None:
            return render(
                "message.html",
                404,
                title="Prescription not found",
                message="This link does not match any prescription. Check the link in the email.",
            )
        if prescription.token_used or prescription.status == DISPENSED:
            return render(
                "message.html",
                410,
                title="Link already used",
                message=(
                    f"This secure link has already been used: prescription {prescription.id} "
                    "was marked as dispensed. Each link works once."
                ),
            )
        if prescription.status in (VOIDED, EXPIRED):
            return render(
                "message.html",
                410,
                title=f"Prescription {prescription.status}",
                message=f"Prescription {prescription.id} is {prescription.status} and can no "
                "longer be dispensed.",
            )
        if prescription.status == ISSUED:
            return render(
                "message.html",
                409,
                title="Not signed yet",
                message="This prescription is still being signed. Try again in a moment.",
            )
        return None

    def portal_page(
        prescription: Prescription, status_code: int = 200, error: str | None = None
    ) -> Response:
        return render(
            "portal.html",
            status_code,
            p=prescription,
            contact=sandbox.contacts[prescription.contact_id],
            clinic=sandbox.clinics.get(prescription.clinic_id),
            prescriber=sandbox.prescribers.get(prescription.prescriber_id),
            groups=PHARMACY_GROUPS,
            error=error,
        )

    async def portal_action(request: Request, token: str) -> tuple[Prescription, str] | Response:
        prescription = sandbox.by_token(token)
        gone = portal_gone(prescription)
        if gone is not None:
            return gone
        assert prescription is not None
        try:
            form = await form_body(request)
        except BadRequest as exc:
            return portal_page(prescription, exc.status_code, exc.message)
        group = form.get("pharmacy_group", "")
        if group not in PHARMACY_GROUPS:
            return portal_page(prescription, 422, "Choose your pharmacy group first.")
        if not sandbox.group_matches(prescription, group):
            return portal_page(
                prescription,
                422,
                f'No prescription {prescription.id} for your pharmacy under "{group}". '
                "Check the pharmacy group.",
            )
        return prescription, group

    @app.get("/portal/{token}", response_class=HTMLResponse)
    async def portal(request: Request, token: str) -> Response:
        prescription = sandbox.by_token(token)
        gone = portal_gone(prescription)
        if gone is not None:
            return gone
        assert prescription is not None
        return portal_page(prescription)

    @app.post("/portal/{token}/print", response_class=HTMLResponse)
    async def portal_print(request: Request, token: str) -> Response:
        outcome = await portal_action(request, token)
        if isinstance(outcome, Response):
            return outcome
        prescription, group = outcome
        sandbox.print_(prescription, group)
        return RedirectResponse(f"/portal/{token}?printed=1", status_code=303)

    @app.post("/portal/{token}/dispense", response_class=HTMLResponse)
    async def portal_dispense(request: Request, token: str) -> Response:
        outcome = await portal_action(request, token)
        if isinstance(outcome, Response):
            return outcome
        prescription, group = outcome
        sandbox.dispense(prescription, group)
        return render(
            "message.html",
            200,
            title="Marked as dispensed",
            message=f"Prescription {prescription.id} is marked as dispensed. Thank you.",
        )
