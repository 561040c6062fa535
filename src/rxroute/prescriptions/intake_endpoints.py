"""``POST /api/v1/prescriptions``: an integrating platform writes a prescription.

Its own router (same prefix and tag as :mod:`rxroute.prescriptions.endpoints`): it
authenticates by API key only and is idempotent by ``Idempotency-Key``
(:mod:`rxroute.idempotency`).
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request, Response, status

from rxroute.api_docs import bearer_auth
from rxroute.api_errors import ApiError, error_responses
from rxroute.apiclients.dependencies import require_scope
from rxroute.apiclients.scopes import Scope
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.idempotency import (
    REPLAYED_HEADER,
    Answer,
    idempotency_key,
    request_fingerprint,
    run_once,
)
from rxroute.models import ApiClient
from rxroute.prescriptions.errors import PrescriptionError
from rxroute.prescriptions.intake import create_from_platform
from rxroute.prescriptions.schemas import PrescriptionCreate, PrescriptionOut

log = structlog.get_logger(__name__)

router = APIRouter(
    prefix="/api/v1/prescriptions",
    tags=["prescriptions"],
    dependencies=[Depends(bearer_auth)],
    responses=error_responses(400, 401, 403, 409, 422, 503),
)


@router.post(
    "",
    name="create",
    summary="Create a prescription",
    status_code=status.HTTP_201_CREATED,
    response_model=PrescriptionOut,
    responses={
        201: {
            "description": "Created, or the first answer replayed for the same key and body.",
            "headers": {
                REPLAYED_HEADER: {
                    "description": "`true` when this is the stored answer of an earlier "
                    "request with the same key and body.",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        }
    },
)
async def create(
    body: PrescriptionCreate,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    client: Annotated[ApiClient, Depends(require_scope(Scope.PRESCRIPTIONS_WRITE))],
    key: Annotated[str, Depends(idempotency_key)],
) -> Response:
    """Write a draft prescription for a patient (by the platform's `patient_external_id`).

    Needs an API key with the `prescriptions:write` scope and an `Idempotency-Key` header.
    The same key with the same body answers what the first request answered (with
    `Idempotent-Replayed: true`) and creates nothing; with a different body it is a 422;
    while the first request with the key is still running, a 409. Keys are kept 24 hours.
    The draft is then sent by the patient, or by the platform with `prescriptions:send`.
    """

    async def operation() -> Answer:
        try:
            prescription = await create_from_platform(session, body)
        except PrescriptionError as exc:
            raise ApiError(exc.status_code, exc.message, field=exc.field) from exc
        log.info(
            "prescription_created_by_api",
            prescription_id=str(prescription.id),
            client_id=str(client.id),
        )
        return Answer.json(
            status.HTTP_201_CREATED, PrescriptionOut.of(prescription).model_dump(mode="json")
        )

    return await run_once(
        session,
        runtime.settings,
        client_id=client.id,
        key=key,
        request_fingerprint=await request_fingerprint(request),
        operation=operation,
    )
