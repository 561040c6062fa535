"""``rxroute demo`` prints a ready API key with every scope, and a curl line to try it."""

from __future__ import annotations

import shlex

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.scopes import Scope
from rxroute.apiclients.service import revoke_client
from rxroute.demo import DEMO_CLIENT_NAME, api_key_lines, demo_api_key
from rxroute.models import ApiClient
from rxroute.runtime import Runtime
from tests.apiclients.helpers import bearer


async def _key(db: Runtime) -> str:
    async with db.sessionmaker() as session, session.begin():
        return await demo_api_key(session)


async def test_each_start_gives_a_working_key_with_every_scope(
    db: Runtime, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    first = await _key(db)
    second = await _key(db)
    assert first != second
    assert (await client.get("/api/v1/prescriptions", headers=bearer(first))).status_code == 401
    for path in ("/api/v1/prescriptions", "/api/v1/prescribers"):
        assert (await client.get(path, headers=bearer(second))).status_code == 200, path
    stored = list(await session.scalars(select(ApiClient)))
    assert [(c.name, sorted(c.scopes)) for c in stored] == [
        (DEMO_CLIENT_NAME, sorted(s.value for s in Scope))
    ]


async def test_a_revoked_or_narrowed_demo_client_is_put_back(
    db: Runtime, client: httpx.AsyncClient
) -> None:
    await _key(db)
    async with db.sessionmaker() as session, session.begin():
        stored = await session.scalar(select(ApiClient))
        assert stored is not None
        stored.scopes = [Scope.PHARMACIES_READ.value]
        await revoke_client(session, DEMO_CLIENT_NAME)
    key = await _key(db)
    response = await client.get("/api/v1/prescribers", headers=bearer(key))
    assert response.status_code == 200, response.text


def test_the_printed_lines_carry_the_key_and_a_curl_that_uses_it() -> None:
    key = "rxr_" + "A" * 43
    lines = api_key_lines(key, "http://127.0.0.1:8000")
    assert key in lines[0]
    curl = lines[1].split("try: ", 1)[1]
    assert shlex.split(curl) == [
        "curl",
        "-H",
        f"Authorization: Bearer {key}",
        "http://127.0.0.1:8000/api/v1/prescriptions",
    ]
