"""``GET /api/v1/prescribers``: who may sign prescriptions, for platforms writing them.

A platform names the prescriber of a new prescription by rxroute's id or its own
``external_id``; this list is how it learns them. Support and admin may read it too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from rxroute.api_docs import bearer_auth
from rxroute.api_errors import ApiError, error_responses
from rxroute.apiclients.dependencies import Caller, user_or_key
from rxroute.apiclients.scopes import Scope
from rxroute.auth.dependencies import SessionDep
from rxroute.prescribers import repository
from rxroute.prescribers.schemas import PrescriberList, PrescriberOut

router = APIRouter(
    prefix="/api/v1/prescribers", tags=["prescribers"], dependencies=[Depends(bearer_auth)]
)

MAX_OFFSET = 1_000_000


@router.get(
    "",
    name="list",
    summary="List prescribers",
    response_model=PrescriberList,
    responses=error_responses(401, 403, 422, 503),
)
async def list_prescribers(
    session: SessionDep,
    caller: Annotated[Caller, Depends(user_or_key(Scope.PRESCRIBERS_READ))],
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 500,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="How many to skip, by name.")
    ] = 0,
) -> PrescriberList:
    """Every prescriber (active or not), by name: ids and external ids, never credentials."""
    if not repository.may_list(caller.who):
        raise ApiError(
            status.HTTP_403_FORBIDDEN,
            "listing prescribers needs the support or admin role, or an API key with the "
            f"{Scope.PRESCRIBERS_READ.value} scope",
        )
    found = await repository.list_prescribers(session, limit=limit, offset=offset)
    return PrescriberList(results=[PrescriberOut.of(p) for p in found])
