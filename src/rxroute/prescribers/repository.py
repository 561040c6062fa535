"""Prescriber queries for the API, with who may list them decided in one place."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import ApiClient, Prescriber, Role, User

#: People who may list every prescriber (an API key needs ``prescribers:read`` instead,
#: checked by the endpoint's dependency).
STAFF_ROLES = frozenset({Role.SUPPORT.value, Role.ADMIN.value})


def may_list(who: User | ApiClient) -> bool:
    return isinstance(who, ApiClient) or who.role in STAFF_ROLES


async def list_prescribers(
    session: AsyncSession, *, limit: int = 100, offset: int = 0
) -> list[Prescriber]:
    statement = (
        select(Prescriber).order_by(Prescriber.full_name, Prescriber.id).limit(limit).offset(offset)
    )
    return list(await session.scalars(statement))
