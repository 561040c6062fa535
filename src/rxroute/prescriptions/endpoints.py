from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import JSONResponse

from rxroute.api_docs import bearer_auth
from rxroute.api_errors import ApiError, error_responses
from rxroute.apiclients.dependencies import Caller, user_or_key
from rxroute.apiclients.scopes import Scope
from rxroute.auth.dependencies import RuntimeDep, SessionDep, StaffUser
from rxroute.deliveries.ledger import deliveries_of
from rxroute.notifications import service as notifications
from rxroute.prescriptions import repository, service
from rxroute.prescriptions.errors import PrescriptionError
from rxroute.prescriptions.history import history
from rxroute.prescriptions.repository import Requester
from rxroute.prescriptions.schemas import (
    DeliveryOut,
    PatientEmailOut,
    PrescriptionDetail,
    PrescriptionList,
    PrescriptionOut,
    ReasonRequest,
    RerouteRequest,
    SendAccepted,
    SendRequest,
    StatusEventOut,
)
from rxroute.prescriptions.tasks import defer_send

router = APIRouter(
    prefix="/api/v1/prescriptions",
    tags=["prescriptions"],
    dependencies=[Depends(bearer_auth)],
    # Every operation here authenticates, takes a parameter and reads the database.
    responses=error_responses(401, 422, 503),
)

#: Past this, OFFSET makes PostgreSQL walk and discard that many rows for each page; and an
#: unbounded value (beyond bigint) reached the database as an error instead of a 422.
MAX_OFFSET = 1_000_000

#: Answers of the operations that change a prescription: 403 covers a cookie-authenticated
#: call without its CSRF header, and a role that may not do it.
_CHANGE_ERRORS = error_responses(403, 404, 409)


#: A signed-in user (their role's rules), or a platform's API key holding the scope (every
#: prescription; acting on the patient's behalf).
Reader = Annotated[Caller, Depends(user_or_key(Scope.PRESCRIPTIONS_READ))]
Sender = Annotated[Caller, Depends(user_or_key(Scope.PRESCRIPTIONS_SEND))]


def _http(error: PrescriptionError) -> ApiError:
    return ApiError(error.status_code, error.message, field=error.field)


@router.get(
    "",
    name="list",
    summary="List prescriptions",
    response_model=PrescriptionList,
    responses=error_responses(403),
)
async def list_prescriptions(
    session: SessionDep,
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 100,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="How many to skip, newest first.")
    ] = 0,
) -> PrescriptionList:
    """The caller's own prescriptions (support, admin and API keys: everyone's), newest first."""
    found = await repository.list_visible(session, caller.who, limit=limit, offset=offset)
    return PrescriptionList(results=[PrescriptionOut.of(p) for p in found])


@router.get(
    "/{prescription_id}",
    name="get",
    summary="Get a prescription",
    response_model=PrescriptionDetail,
    responses=error_responses(403, 404),
)
async def get_prescription(
    prescription_id: uuid.UUID, session: SessionDep, caller: Reader, runtime: RuntimeDep
) -> PrescriptionDetail:
    """Current status and the whole history: what happened, when, and who said so."""
    prescription = await repository.get_visible(session, caller.who, prescription_id)
    if prescription is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "prescription not found")
    events = await history(session, prescription_id)
    return PrescriptionDetail(
        **PrescriptionOut.of(prescription).model_dump(),
        history=[StatusEventOut.of(event, runtime.settings.display_zone) for event in events],
        deliveries=[DeliveryOut.of(d) for d in await deliveries_of(session, prescription_id)],
        patient_emails=[
            PatientEmailOut.of(email, runtime.settings.display_zone)
            for email in await notifications.of_prescription(
                session, prescription_id, sent_only=True
            )
        ],
    )


@router.post(
    "/{prescription_id}/send",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SendAccepted,
    responses=_CHANGE_ERRORS,
)
async def send(
    prescription_id: uuid.UUID,
    body: SendRequest,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: Sender,
) -> JSONResponse:
    """Queue the prescription for its region's channel; poll the status URL for progress."""
    try:
        prescription = await service.request_send(
            session,
            runtime,
            caller.who,
            prescription_id,
            region=body.region,
            pharmacy_id=body.pharmacy_id,
        )
    except PrescriptionError as exc:
        raise _http(exc) from exc
    await defer_send(session, prescription.id)
    return _accepted(prescription.id, prescription.status)


def _accepted(prescription_id: uuid.UUID, current_status: str) -> JSONResponse:
    status_url = f"/api/v1/prescriptions/{prescription_id}"
    accepted = SendAccepted(id=prescription_id, status=current_status, status_url=status_url)
    return JSONResponse(
        status_code=status.HTTP_202_ACCEPTED,
        content=accepted.model_dump(mode="json"),
        headers={"Location": status_url},
    )


@router.post(
    "/{prescription_id}/reroute",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SendAccepted,
    responses=_CHANGE_ERRORS,
)
async def reroute(
    prescription_id: uuid.UUID,
    body: RerouteRequest,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: Sender,
) -> JSONResponse:
    """Send it to another pharmacy or region instead, before it is dispensed.

    Earlier deliveries are withdrawn first (the platform copy voided, or the pharmacy sent
    a cancellation), then the new one goes out. Patients (their own prescriptions), API keys
    and support may call it; support must give a reason.
    """
    try:
        prescription = await service.reroute(
            session,
            runtime,
            caller.who,
            prescription_id,
            region=body.region,
            pharmacy_id=body.pharmacy_id,
            reason=body.reason,
        )
    except PrescriptionError as exc:
        raise _http(exc) from exc
    await defer_send(session, prescription.id)
    return _accepted(prescription.id, prescription.status)


@router.post(
    "/{prescription_id}/cancel",
    response_model=PrescriptionOut,
    responses=_CHANGE_ERRORS,
)
async def cancel(
    prescription_id: uuid.UUID, body: ReasonRequest, runtime: RuntimeDep, caller: Sender
) -> PrescriptionOut:
    """The patient (or their platform, with a key) cancels the prescription before it is
    dispensed.

    The platform copy is voided (or the pharmacy is emailed a cancellation) before the
    answer says "cancelled".
    """
    return await _cancel(runtime, caller.who, prescription_id, body.reason)


@router.post(
    "/{prescription_id}/void",
    response_model=PrescriptionOut,
    responses=_CHANGE_ERRORS,
)
async def void(
    prescription_id: uuid.UUID,
    runtime: RuntimeDep,
    user: StaffUser,
    body: ReasonRequest | None = None,
) -> PrescriptionOut:
    """Cancel a prescription (on the platform too, for Region B). Support and admin only."""
    return await _cancel(runtime, user, prescription_id, body.reason if body else None)


async def _cancel(
    runtime: RuntimeDep, user: Requester, prescription_id: uuid.UUID, reason: str | None
) -> PrescriptionOut:
    try:
        prescription = await service.cancel(runtime, user, prescription_id, reason=reason)
    except PrescriptionError as exc:
        raise _http(exc) from exc
    return PrescriptionOut.of(prescription)
