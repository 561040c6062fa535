"""Region A: the pharmacy confirms, through the emailed link, that it dispensed.

The pharmacy has no rxroute account: the signed, expiring token in the link is the
credential (see :mod:`rxroute.channels.email.links`). The page shows only rxroute's
prescription ID and the items - nothing about the patient beyond what the PDF already gave.
The confirm form repeats the token in a hidden ``nonce`` field that must equal the token in
the URL, so a page elsewhere cannot post a confirmation without knowing the link. Confirming
twice is harmless: the second time says it was already confirmed.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.auth.keys import link_keys
from rxroute.channels.email.links import LinkExpired, LinkInvalid, read_dispense_token
from rxroute.deliveries import ledger
from rxroute.models import Delivery, DeliveryState, Prescription
from rxroute.prescriptions.history import lock_prescription
from rxroute.prescriptions.lifecycle import Source, Status, advances
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

#: Who confirmed, in the history: the holder of the emailed link.
ACTOR = "pharmacy-email-link"
MAX_TOKEN = 1000

_CLOSED = {
    Status.VOIDED: (
        "This prescription was cancelled. Please do not dispense it; contact the clinic."
    ),
    Status.EXPIRED: "This prescription has expired. Please contact the clinic.",
}


def _private(response: Response) -> Response:
    # The token is a credential: keep it out of caches and out of Referer headers.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _link_problem(request: Request, status_code: int, heading: str, message: str) -> Response:
    page = render(
        request,
        "pharmacy/link_error.html",
        {"heading": heading, "message": message},
        status_code=status_code,
    )
    return _private(page)


def _expired(request: Request) -> Response:
    return _link_problem(
        request,
        410,
        "This link has expired",
        "Confirmation links work for a limited time. Please contact the clinic that sent the "
        "prescription and quote the prescription number on the PDF.",
    )


def _invalid(request: Request) -> Response:
    return _link_problem(
        request,
        400,
        "This link is not valid",
        "The link may have been cut short or changed. Open it again from the email; if it "
        "still does not work, please contact the clinic that sent the prescription.",
    )


@dataclass(frozen=True)
class _Link:
    prescription_id: uuid.UUID
    delivery_id: uuid.UUID
    nonce: str


def _read_link(runtime: RuntimeDep, token: str) -> _Link:
    """Raises LinkExpired or LinkInvalid."""
    if len(token) > MAX_TOKEN:
        raise LinkInvalid("the confirmation link is not valid")
    settings = runtime.settings
    link = read_dispense_token(
        link_keys(settings).verifying,
        token,
        settings.pharmacy_link_ttl_hours * 3600,
    )
    try:
        return _Link(uuid.UUID(link.prescription_id), uuid.UUID(link.delivery_id), link.nonce)
    except ValueError:
        raise LinkInvalid("the confirmation link is not valid") from None


async def _bound_delivery(session: AsyncSession, link: _Link) -> Delivery | None:
    """The delivery the link was minted for, if it is still its prescription's live one."""
    delivery = await session.get(Delivery, link.delivery_id)
    if (
        delivery is None
        or delivery.prescription_id != link.prescription_id
        or delivery.link_nonce is None
        or not hmac.compare_digest(delivery.link_nonce.encode(), link.nonce.encode())
    ):
        return None
    return delivery


_NOT_LIVE = (
    "This link belongs to a copy of the prescription that was cancelled or sent to another "
    "pharmacy. Please do not dispense it; contact the clinic."
)


async def _load(session: AsyncSession, prescription_id: uuid.UUID) -> Prescription | None:
    result = await session.scalars(
        select(Prescription)
        .where(Prescription.id == prescription_id)
        .options(selectinload(Prescription.items))
        .execution_options(populate_existing=True)
    )
    return result.one_or_none()


def _page(
    request: Request,
    prescription: Prescription,
    token: str,
    *,
    notice: str | None = None,
    status_code: int = 200,
    closed: bool = False,
) -> Response:
    status = Status(prescription.status)
    page = render(
        request,
        "pharmacy/confirm.html",
        {
            "p": prescription,
            "token": token,
            "status": status,
            "dispensed": status is Status.DISPENSED,
            "closed": _NOT_LIVE if closed else _CLOSED.get(status),
            "notice": notice,
        },
        status_code=status_code,
    )
    return _private(page)


@router.get("/pharmacy/confirm/{token}", response_class=HTMLResponse, response_model=None)
async def confirm_page(
    request: Request,
    token: str,
    session: SessionDep,
    runtime: RuntimeDep,
    done: str | None = None,
) -> Response:
    try:
        link = _read_link(runtime, token)
    except LinkExpired:
        return _expired(request)
    except LinkInvalid:
        return _invalid(request)
    prescription = await _load(session, link.prescription_id)
    delivery = await _bound_delivery(session, link)
    if prescription is None or delivery is None:
        return _invalid(request)
    if delivery.state != DeliveryState.LIVE.value:
        return _page(request, prescription, token, notice=_NOT_LIVE, closed=True)
    notice = "Thank you: recorded as dispensed." if done == "1" else None
    return _page(request, prescription, token, notice=notice)


@router.post("/pharmacy/confirm/{token}", response_model=None)
async def confirm(
    request: Request,
    token: str,
    session: SessionDep,
    runtime: RuntimeDep,
    nonce: Annotated[str, Form(max_length=8 * MAX_TOKEN)] = "",
) -> Response:
    try:
        link = _read_link(runtime, token)
    except LinkExpired:
        return _expired(request)
    except LinkInvalid:
        return _invalid(request)
    prescription_id = link.prescription_id
    if not hmac.compare_digest(nonce.encode(), token.encode()):
        return _link_problem(
            request,
            403,
            "Please confirm from the page",
            "Open the link from the email and press “Confirm dispensed” on that page.",
        )
    if await _load(session, prescription_id) is None:
        return _invalid(request)
    locked = await lock_prescription(session, prescription_id)
    delivery = await _bound_delivery(session, link)
    if delivery is None:
        return _invalid(request)
    current = Status(locked.status)
    if delivery.state != DeliveryState.LIVE.value or locked.current_delivery_id != delivery.id:
        prescription = await _load(session, prescription_id)
        assert prescription is not None
        return _page(request, prescription, token, notice=_NOT_LIVE, status_code=409, closed=True)
    if current is Status.DISPENSED:
        prescription = await _load(session, prescription_id)
        assert prescription is not None
        return _page(request, prescription, token, notice="This was already confirmed.")
    if current in _CLOSED or not advances(current, Status.DISPENSED):
        prescription = await _load(session, prescription_id)
        assert prescription is not None
        message = _CLOSED.get(current) or (
            "This prescription has not been sent to a pharmacy yet, so it cannot be confirmed. "
            "Please contact the clinic."
        )
        return _page(request, prescription, token, notice=message, status_code=409)
    await ledger.observe(
        session,
        locked,
        delivery,
        Status.DISPENSED,
        source=Source.PHARMACY,
        actor=ACTOR,
        detail="confirmed through the emailed link",
    )
    return _private(RedirectResponse(f"/pharmacy/confirm/{token}?done=1", status_code=303))
