"""``PUT /api/v1/patients/{external_id}``: integrating platforms upsert their patients."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from fastapi.responses import JSONResponse

from rxroute.api_docs import bearer_auth
from rxroute.api_errors import ApiError, error_responses
from rxroute.apiclients.dependencies import require_scope
from rxroute.apiclients.scopes import Scope
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.models import ApiClient
from rxroute.patients.schemas import PatientIn, PatientOut
from rxroute.patients.service import MAX_EXTERNAL_ID, PatientError, upsert_patient

router = APIRouter(
    prefix="/api/v1/patients",
    tags=["patients"],
    dependencies=[Depends(bearer_auth)],
    responses=error_responses(401, 403, 422, 503),
)

ExternalId = Annotated[
    str,
    Path(
        max_length=MAX_EXTERNAL_ID,
        description="The platform's own ID for the patient: 1 to 200 printable characters.",
        examples=["pt_8f14e45f"],
    ),
]


@router.put(
    "/{external_id}",
    name="upsert",
    summary="Create or update a patient",
    response_model=PatientOut,
    responses={201: {"model": PatientOut, "description": "Created."}},
)
async def upsert(
    external_id: ExternalId,
    body: PatientIn,
    session: SessionDep,
    runtime: RuntimeDep,
    client: Annotated[ApiClient, Depends(require_scope(Scope.PATIENTS_WRITE))],
) -> JSONResponse:
    """Create the patient with this external ID (201) or replace their details (200).

    Needs an API key with the `patients:write` scope. Omitted `nhs_number` and `region`
    keep what is stored. The patient keeps their rxroute `id`, so their prescriptions are
    unaffected. Each refused field is named in `errors`; values are never repeated.
    """
    try:
        upserted = await upsert_patient(session, runtime.settings, external_id, body)
    except PatientError as exc:
        raise ApiError(exc.status_code, exc.message, field=exc.field) from exc
    return JSONResponse(
        status_code=status.HTTP_201_CREATED if upserted.created else status.HTTP_200_OK,
        content=PatientOut.of(upserted.patient).model_dump(mode="json"),
    )
