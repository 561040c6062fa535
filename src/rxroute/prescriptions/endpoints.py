from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import JSONResponse

from rxroute.auth.dependencies import CurrentUser, RuntimeDep, SessionDep, StaffUser
from rxroute.prescriptions import repository, service
from rxroute.prescriptions.errors import PrescriptionError
from rxroute.prescriptions.history import history
from rxroute.prescriptions.schemas import (
    PrescriptionDetail,
    PrescriptionList,
    PrescriptionOut,
    SendAccepted,
    SendRequest,
    StatusEventOut,
)
from rxroute.prescriptions.tasks import defer_send
from rxroute.prescriptions.voiding import void_prescription

router = APIRouter(prefix="/api/v1/prescriptions", tags=["prescriptions"])


def _http(error: PrescriptionError) -> HTTPException:
    return HTTPException(status_code=error.status_code, detail=error.message)


@router.get("", response_model=PrescriptionList)
async def list_prescriptions(
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PrescriptionList:
    """The caller's own prescriptions (support and admin: everyone's), newest first."""
    found = await repository.list_visible(session, user, limit=limit, offset=offset)
    return PrescriptionList(results=[PrescriptionOut.of(p) for p in found])


@router.get("/{prescription_id}", response_model=PrescriptionDetail)
async def get_prescription(
    prescription_id: uuid.UUID, session: SessionDep, user: CurrentUser, runtime: RuntimeDep
) -> PrescriptionDetail:
    """Current status and the whole history: what happened, when, and who said so."""
    prescription = await repository.get_visible(session, user, prescription_id)
    if prescription is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="prescription not found")
    events = await history(session, prescription_id)
    return PrescriptionDetail(
        **PrescriptionOut.of(prescription).model_dump(),
        history=[StatusEventOut.of(event, runtime.settings.display_zone) for event in events],
    )


@router.post(
    "/{prescription_id}/send",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SendAccepted,
    responses={404: {}, 409: {}, 422: {}},
)
async def send(
    prescription_id: uuid.UUID,
    body: SendRequest,
    session: SessionDep,
    runtime: RuntimeDep,
    user: CurrentUser,
) -> JSONResponse:
    """Queue the prescription for its region's channel; poll the status URL for progress."""
    try:
        prescription = await service.request_send(
            session,
            runtime.settings,
            user,
            prescription_id,
            region=body.region,
            pharmacy_id=body.pharmacy_id,
        )
    except PrescriptionError as exc:
        raise _http(exc) from exc
    await defer_send(session, prescription.id)
    status_url = f"/api/v1/prescriptions/{prescription.id}"
    accepted = SendAccepted(id=prescription.id, status=prescription.status, status_url=status_url)
    return JSONResponse(
        status_code=status.HTTP_202_ACCEPTED,
        content=accepted.model_dump(mode="json"),
        headers={"Location": status_url},
    )


@router.post("/{prescription_id}/void", response_model=PrescriptionOut)
async def void(prescription_id: uuid.UUID, runtime: RuntimeDep, user: StaffUser) -> PrescriptionOut:
    """Cancel a prescription (on the platform too, for Region B). Support and admin only."""
    try:
        prescription = await void_prescription(runtime, user, prescription_id)
    except PrescriptionError as exc:
        raise _http(exc) from exc
    return PrescriptionOut.of(prescription)
