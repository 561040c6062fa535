"""Prescriber pages and the formulary: signed-in clients and a loaded formulary."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.formulary.sample import add_sample
from rxroute.models import Prescriber, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.staff_pages import admin as admin  # a fixture
from tests.staff_pages import as_admin as as_admin  # a fixture
from tests.staff_pages import sign_in


async def make_prescriber_user(session: AsyncSession, prescriber: Prescriber | None) -> User:
    user = await factories.make_user(session, Role.PRESCRIBER)
    user.prescriber_id = prescriber.id if prescriber is not None else None
    await session.flush()
    return user


@pytest.fixture
async def prescriber(session: AsyncSession, db: Runtime) -> Prescriber:
    return await factories.make_prescriber(session, db.secret_box, full_name="Dr Writer Example")


@pytest.fixture
async def prescriber_user(session: AsyncSession, prescriber: Prescriber) -> User:
    user = await make_prescriber_user(session, prescriber)
    await add_sample(session)
    await session.commit()
    return user


@pytest.fixture
async def as_prescriber(client: httpx.AsyncClient, prescriber_user: User) -> httpx.AsyncClient:
    await sign_in(client, prescriber_user)
    return client
