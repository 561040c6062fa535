"""Prescription queries, with who-may-see-what applied in one place."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from rxroute.models import ApiClient, Prescription, Role, User

#: Who asks: a signed-in person, or an integrating platform's API client (whose scope the
#: operation's dependency has already checked, see :mod:`rxroute.apiclients.dependencies`).
Requester = User | ApiClient


def visible_to(user: Requester) -> Select[Prescription]:
    """Patients see their own, prescribers what they wrote, support and admin everything.

    An API client sees every prescription: the platform owns them all (it wrote them or
    its patients did), and its key's scope decides what it may do with them.

    An account whose profile link is missing (no patient or prescriber record) sees nothing:
    the comparison with NULL matches no row.
    """
    statement = select(Prescription)
    if isinstance(user, ApiClient):
        return statement
    match user.role:
        case Role.PATIENT.value:
            statement = statement.where(Prescription.patient_id == user.patient_id)
        case Role.PRESCRIBER.value:
            statement = statement.where(Prescription.prescriber_id == user.prescriber_id)
        case Role.SUPPORT.value | Role.ADMIN.value:
            pass
        case _:
            statement = statement.where(false())
    return statement


async def get_visible(
    session: AsyncSession,
    user: Requester,
    prescription_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Prescription | None:
    statement = (
        visible_to(user)
        .where(Prescription.id == prescription_id)
        .options(selectinload(Prescription.items), selectinload(Prescription.pharmacy))
    )
    if for_update:
        statement = statement.with_for_update(of=Prescription)
    result = await session.scalars(statement.execution_options(populate_existing=True))
    return result.one_or_none()


async def list_visible(
    session: AsyncSession, user: Requester, *, limit: int = 100, offset: int = 0
) -> list[Prescription]:
    statement = (
        visible_to(user)
        .options(selectinload(Prescription.items), selectinload(Prescription.pharmacy))
        .order_by(Prescription.created_at.desc(), Prescription.id)
        .limit(limit)
        .offset(offset)
    )
    return list(await session.scalars(statement))


def for_sending(*prescription_ids: uuid.UUID) -> Select[Prescription]:
    """Prescriptions with everything a channel needs, loaded eagerly (relationships are
    lazy='raise'): one send, or a reconciliation batch, in a fixed number of statements."""
    return (
        select(Prescription)
        .where(Prescription.id.in_(prescription_ids))
        .options(
            selectinload(Prescription.items),
            selectinload(Prescription.patient),
            selectinload(Prescription.prescriber),
            selectinload(Prescription.pharmacy),
        )
        .execution_options(populate_existing=True)
    )


async def load_for_sending(session: AsyncSession, prescription_id: uuid.UUID) -> Prescription:
    return (await session.scalars(for_sending(prescription_id))).one()
