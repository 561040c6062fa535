"""While the database is out of reach the API answers 503 with Retry-After, never 500.

Two ways out of reach: the engine pointed at a port nobody listens on, and a real database
whose connections are terminated and new ones refused; once it is back the same process
answers normally again, with no restart.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy.exc
from psycopg import errors

from rxroute.app import create_app
from rxroute.auth.dependencies import SESSION_COOKIE
from rxroute.auth.keys import session_keys
from rxroute.auth.tokens import issue_token
from rxroute.db.engine import create_engine, create_sessionmaker
from rxroute.runtime import Runtime
from tests.jobs.conftest import Driver

LOGIN = {"email": "nobody@example.com", "password": "not-the-password"}


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"


@pytest.fixture
async def dead_database(db: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Every request's session (and /readyz's engine) aims at a closed port."""
    dead = create_engine("postgresql://nobody@127.0.0.1:1/nothing", pool_size=1)
    monkeypatch.setattr(db, "engine", dead)
    monkeypatch.setattr(db, "sessionmaker", create_sessionmaker(dead))
    yield
    await dead.dispose()


@pytest.mark.usefixtures("dead_database")
async def test_api_answers_503_with_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/token", json=LOGIN)
    _assert_unavailable(response)
    assert response.headers["content-type"].startswith("application/json")
    assert "database" in response.json()["detail"]
    assert set(response.json()) == {"detail"}


@pytest.mark.usefixtures("dead_database")
async def test_pages_answer_503_with_the_html_error_page(
    client: httpx.AsyncClient, db: Runtime
) -> None:
    # A genuinely signed token: checking its session is the first database read, and fails.
    client.cookies.set(SESSION_COOKIE, issue_token(session_keys(db.settings), uuid.uuid4()))
    response = await client.get("/prescriptions", headers={"accept": "text/html"})
    _assert_unavailable(response)
    assert response.headers["content-type"].startswith("text/html")
    assert "Temporarily unavailable" in response.text


@pytest.mark.usefixtures("dead_database")
async def test_readyz_says_why(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    _assert_unavailable(response)
    assert response.json() == {
        "status": "unavailable",
        "reason": "database unreachable (connection refused)",
    }


async def test_a_database_cut_off_and_back_gives_503_then_answers_again(
    client: httpx.AsyncClient, db: Runtime, driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(driver.database.url, pool_size=2)
    monkeypatch.setattr(db, "engine", engine)
    monkeypatch.setattr(db, "sessionmaker", create_sessionmaker(engine))
    try:
        assert (await client.post("/api/v1/auth/token", json=LOGIN)).status_code == 401
        async with driver.refusing_connections():  # the pooled connection is terminated too
            _assert_unavailable(await client.post("/api/v1/auth/token", json=LOGIN))
            ready = await client.get("/readyz")
            _assert_unavailable(ready)
            assert ready.json()["reason"].startswith("database unreachable (")
        assert (await client.post("/api/v1/auth/token", json=LOGIN)).status_code == 401
        assert (await client.get("/readyz")).status_code == 200
    finally:
        await engine.dispose()


async def test_other_database_errors_are_still_500(db: Runtime) -> None:
    """Only an outage is a 503: a database error from a bug stays a 500 with a request id."""
    app = create_app(db.settings)

    @app.get("/api/v1/test-only/conflict")
    async def conflict() -> None:
        raise sqlalchemy.exc.IntegrityError("INSERT", {}, errors.UniqueViolation("duplicate"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://rxroute.test") as api:
        response = await api.get("/api/v1/test-only/conflict")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert response.json()["request_id"]
