from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from rxroute.config import Settings
from rxroute.db.engine import create_engine
from rxroute.runtime import Runtime


async def test_healthz_answers_without_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_ready_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_readyz_503_when_database_is_down(
    client: httpx.AsyncClient, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = create_engine("postgresql://nobody@127.0.0.1:1/nothing", pool_size=1)
    monkeypatch.setattr(db, "engine", dead)
    try:
        response = await client.get("/readyz")
    finally:
        await dead.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("database")


async def test_readyz_503_when_migrations_behind(client: httpx.AsyncClient, db: Runtime) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        response = await client.get("/readyz")
    finally:
        async with db.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    assert response.status_code == 503
    assert "rxroute migrate" in response.json()["reason"]


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_validation_error_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/token", json={"email": "a@example.com"})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "password"
    assert "password" in body["detail"]


async def test_malformed_json_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/token", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_openapi_docs_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_confirmation_tokens_are_masked_in_request_logs(settings: Settings) -> None:
    from rxroute.app import create_app, route_paths
    from rxroute.logging import loggable_path, route_words

    words = route_words(route_paths(create_app(settings)))
    assert loggable_path("/pharmacy/confirm/abc.def.ghi", words) == "/pharmacy/confirm/<token>"
    assert loggable_path("/api/v1/prescriptions", words) == "/api/v1/prescriptions"


async def test_readyz_ready_when_the_schema_is_ahead_of_the_code(
    client: httpx.AsyncClient, db: Runtime
) -> None:
    """Migrations run before the new code rolls out: the old pods must stay ready meanwhile,
    and after a code rollback too."""
    from rxroute.db import migrate

    head = migrate.head_revision()
    async with db.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '9999_next'"))
    try:
        response = await client.get("/readyz")
    finally:
        async with db.engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head}
            )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "migration": "9999_next"}
