"""Shared fixtures: a real PostgreSQL with migrations applied, the runtime, an API client.

With ``RXROUTE_TEST_DATABASE_URL`` set (CI points it at the local server) each test session
creates its own fresh database there and drops it at the end; otherwise an embedded
PostgreSQL is started under a temporary folder. Either way the schema comes from the real
migrations.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.db.embedded import start_embedded
from rxroute.runtime import Runtime, start_runtime, stop_runtime

TABLES = (
    "prescription_status_events, delivery_attempts, inbound_webhook_events, "
    "prescription_items, prescriptions, users, patients, pharmacies, prescribers, clinics, "
    "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers"
)


def _replace_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(database=database)
    return parsed.render_as_string(hide_password=False)


def create_test_database(prefix: str = "rxroute_test") -> tuple[str, str | None]:
    """A fresh empty database; returns (url, admin_url_to_drop_it_with or None)."""
    server_url = os.environ.get("RXROUTE_TEST_DATABASE_URL")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    if server_url:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return _replace_database(server_url, name), server_url
    default_dir = Path(tempfile.gettempdir()) / f"rxroute-test-{os.getpid()}"
    var_dir = Path(os.environ.setdefault("RXROUTE_TEST_VAR_DIR", str(default_dir)))
    var_dir.mkdir(parents=True, exist_ok=True)
    admin = start_embedded(var_dir, database="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return admin.replace("/postgres?", f"/{name}?", 1), admin


def drop_test_database(url: str, admin_url: str | None) -> None:
    if admin_url is None:
        return
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(autouse=True)
def _fresh_sign_in_limiter() -> Iterator[None]:
    """Failed sign-ins in one test must not rate-limit the next."""
    from rxroute.auth.ratelimit import sign_in_limiter

    sign_in_limiter.reset()
    yield
    sign_in_limiter.reset()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url, admin = create_test_database()
    migrate.upgrade(url)
    yield url
    drop_test_database(url, admin)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, erx_clinic_id=994, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
async def runtime(settings: Settings, database_url: str) -> AsyncIterator[Runtime]:
    started = await start_runtime(settings, database_url)
    yield started
    await stop_runtime()


@pytest.fixture
async def db(runtime: Runtime) -> Runtime:
    """The runtime over an emptied database (every table truncated before the test)."""
    async with runtime.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return runtime


@pytest.fixture
async def session(db: Runtime) -> AsyncIterator[AsyncSession]:
    """A session whose transaction the test commits explicitly or leaves to roll back."""
    async with db.sessionmaker() as active:
        yield active


@pytest.fixture
async def client(db: Runtime, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from rxroute.app import create_app

    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://rxroute.test") as api:
        yield api
