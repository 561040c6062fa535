from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from rxroute.api_docs import bearer_auth
from rxroute.api_errors import ApiError, error_responses
from rxroute.apiclients.dependencies import Caller, user_or_key
from rxroute.apiclients.scopes import Scope
from rxroute.auth.dependencies import RuntimeDep, SessionDep
from rxroute.pharmacies import repository
from rxroute.pharmacies.schemas import PharmacyList, PharmacyOut

router = APIRouter(
    prefix="/api/v1/pharmacies", tags=["pharmacies"], dependencies=[Depends(bearer_auth)]
)


@router.get(
    "",
    name="search",
    summary="Search pharmacies",
    response_model=PharmacyList,
    responses=error_responses(401, 403, 422, 503),
)
async def search_pharmacies(
    session: SessionDep,
    runtime: RuntimeDep,
    # Any signed-in user, or an API key with pharmacies:read: the list is not personal.
    caller: Annotated[Caller, Depends(user_or_key(Scope.PHARMACIES_READ))],
    region: Annotated[str, Query(min_length=1, max_length=8, description="Region code, e.g. B")],
    q: Annotated[str, Query(max_length=500, description="Name, town or postcode")] = "",
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> PharmacyList:
    """Active accepted pharmacies of a region, best matches first."""
    code = region.strip().upper()
    if runtime.settings.channel_for_region(code) is None:
        served = ", ".join(sorted(runtime.settings.region_channels))
        raise ApiError(422, f"region: {code!r} is not served; use one of {served}", field="region")
    found = await repository.search(session, code, q, limit=limit)
    return PharmacyList(
        region=code, query=repository.normalise_query(q), results=[PharmacyOut.of(p) for p in found]
    )
