"""Shared fixtures: a real PostgreSQL with migrations applied, the runtime, an API client.

With ``RXROUTE_TEST_DATABASE_URL`` set (CI points it at the local server) each test session
creates its own fresh database there and drops it at the end; otherwise an embedded
PostgreSQL is started under a temporary folder. Either way the schema comes from the real
migrations.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth import passwords
from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.db.scratch import create_scratch_database, drop_scratch_database
from rxroute.runtime import Runtime, start_runtime, stop_runtime
from tests import db_reset


def create_test_database(prefix: str = "rxroute_test") -> tuple[str, str]:
    """A fresh empty database; returns (url, admin url to drop it with)."""
    default_dir = Path(tempfile.gettempdir()) / f"rxroute-test-{os.getpid()}"
    var_dir = Path(os.environ.setdefault("RXROUTE_TEST_VAR_DIR", str(default_dir)))
    var_dir.mkdir(parents=True, exist_ok=True)
    return create_scratch_database(prefix, os.environ.get("RXROUTE_TEST_DATABASE_URL"), var_dir)


def drop_test_database(url: str, admin_url: str) -> None:
    drop_scratch_database(url, admin_url)


@pytest.fixture(autouse=True)
def _cheap_password_hashing(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hash and check passwords at argon2-cffi's cheapest profile, made for tests.

    At rxroute's real cost (RFC 9106's recommendation) a hash or a check takes about 0.1 s
    of CPU. The fixtures make a few users per test and sign one in, so that cost was most of
    the suite's setup time (0.5 of the 0.9 s a support-page test took to set up). A hash
    records its own parameters, and a check uses them, so a cheap hash signs in anywhere,
    also in the web processes the slow tests start (where a sign-in then stores a real-cost
    hash, as after a change of parameters). Tests about the cost itself or the rehash are
    marked ``real_password_cost`` and keep the real one.
    """
    if request.node.get_closest_marker("real_password_cost") is None:
        monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(CHEAPEST))


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
    db_reset.install(url)
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
    """The runtime over an emptied database (every row deleted before the test: db_reset)."""
    async with runtime.engine.begin() as connection:
        await connection.execute(text(db_reset.RESET))
    return runtime


@pytest.fixture
async def session(db: Runtime) -> AsyncIterator[AsyncSession]:
    """A session whose transaction the test commits explicitly or leaves to roll back."""
    async with db.sessionmaker() as active:
        yield active


@pytest.fixture(scope="session")
def web_app(settings: Settings) -> FastAPI:
    """One app for every test of the session that uses ``client``.

    Building one takes about 0.13 s (FastAPI resolves every route's dependencies), which
    was most of a short test's run. Sharing it is safe: ``ASGITransport`` runs no lifespan,
    the app's own state is fixed when it is built, and the one limiter it consults is reset
    before each test (``_fresh_sign_in_limiter``). A test that needs other settings builds
    its own with ``create_app``.
    """
    from rxroute.app import create_app

    return create_app(settings)


@pytest.fixture
async def client(db: Runtime, web_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=web_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rxroute.test") as api:
        yield api


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the heap to the operating system at exit.

    After the whole suite the interpreter's final garbage collection walked a heap of test
    leftovers for about two minutes before the process could exit; the results were already
    printed. Freezing moves every object out of the collector's reach, so exit is prompt.
    """
    import gc

    gc.freeze()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests run one at a time, on one test worker, while the other runs the rest.

    ``scripts/test`` runs the suite on two workers (pytest-xdist, ``--dist loadgroup``). The
    slow tests start real rxroute processes (workers, web servers, the sandbox) and each
    holds dozens of database connections and both cores for tens of seconds; two at once
    would starve each other's timing bounds and the server's connection limit. Grouping
    them keeps them serial, as they were before the suite ran in parallel. Runs before
    xdist's own hook, which reads the group.
    """
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.xdist_group("slow"))
