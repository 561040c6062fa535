"""The demo patient's "add demo prescriptions": in development, a signed-in patient with the
page's CSRF token gets fresh drafts; elsewhere there is no button and no route."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Environment, Settings
from rxroute.models import Prescription, User
from rxroute.runtime import Runtime
from rxroute.seed import data
from rxroute.seed.service import seed_demo
from tests.web.helpers import HTML, csrf_of, sign_in

BUTTON = 'id="add-demo-prescriptions"'


@pytest.fixture
async def seeded(db: Runtime) -> Runtime:
    async with db.sessionmaker() as session, session.begin():
        await seed_demo(session, db.secret_box)
    return db


async def _app_client(settings: Settings) -> httpx.AsyncClient:
    from rxroute.app import create_app

    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://rxroute.test", headers=HTML)


@pytest.fixture
async def dev_client(seeded: Runtime, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    assert settings.environment is Environment.DEVELOPMENT
    async with await _app_client(settings) as client:
        yield client


async def _drafts(session: AsyncSession, email: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Prescription)
        .join(User, User.patient_id == Prescription.patient_id)
        .where(User.email == email, Prescription.status == "draft")
    )
    return int(count or 0)


async def test_the_demo_patient_adds_drafts(dev_client: httpx.AsyncClient, seeded: Runtime) -> None:
    await sign_in(dev_client, data.DEMO_PATIENT_EMAIL, data.DEMO_PASSWORD)
    page = await dev_client.get("/prescriptions")
    assert page.status_code == 200
    assert BUTTON in page.text
    async with seeded.sessionmaker() as session:
        before = await _drafts(session, data.DEMO_PATIENT_EMAIL)
    added = await dev_client.post("/demo/prescriptions", data={"csrf_token": csrf_of(page)})
    assert added.status_code == 303
    assert added.headers["location"] == (
        f"/prescriptions?demo_added={data.PATIENT_DRAFTS_DEFAULT}#demo-drafts"
    )
    async with seeded.sessionmaker() as session:
        assert await _drafts(session, data.DEMO_PATIENT_EMAIL) == before + 6
    shown = await dev_client.get(added.headers["location"])
    assert f"Added {data.PATIENT_DRAFTS_DEFAULT} demo prescriptions." in shown.text


async def test_without_the_csrf_token_nothing_is_added(
    dev_client: httpx.AsyncClient, seeded: Runtime
) -> None:
    await sign_in(dev_client, data.DEMO_PATIENT_EMAIL, data.DEMO_PASSWORD)
    async with seeded.sessionmaker() as session:
        before = await _drafts(session, data.DEMO_PATIENT_EMAIL)
    refused = await dev_client.post("/demo/prescriptions", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    async with seeded.sessionmaker() as session:
        assert await _drafts(session, data.DEMO_PATIENT_EMAIL) == before


async def test_staff_cannot_add_drafts(dev_client: httpx.AsyncClient) -> None:
    await sign_in(dev_client, data.DEMO_SUPPORT_EMAIL, data.DEMO_PASSWORD)
    page = await dev_client.get("/support")
    refused = await dev_client.post("/demo/prescriptions", data={"csrf_token": csrf_of(page)})
    assert refused.status_code == 403


@pytest.mark.parametrize("environment", [Environment.STAGING, Environment.PRODUCTION])
async def test_absent_outside_development(
    seeded: Runtime, settings: Settings, environment: Environment
) -> None:
    # Only the app is built with these settings; the running runtime stays the test's.
    elsewhere = settings.model_copy(update={"environment": environment})
    async with await _app_client(elsewhere) as client:
        await sign_in(client, data.DEMO_PATIENT_EMAIL, data.DEMO_PASSWORD)
        page = await client.get("/prescriptions")
        assert page.status_code == 200
        assert BUTTON not in page.text
        missing = await client.post("/demo/prescriptions", data={"csrf_token": csrf_of(page)})
        assert missing.status_code == 404
