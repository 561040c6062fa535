"""Every connection rxroute opens runs its session in UTC, whatever the server's default."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url

from rxroute.db.engine import create_engine
from rxroute.jobs import make_pool
from tests.conftest import create_test_database, drop_test_database

ZONE = "America/New_York"


@pytest.fixture(scope="module")
def new_york_database() -> Iterator[str]:
    """A scratch database whose sessions default to New York time."""
    url, admin = create_test_database("rxroute_tz")
    with psycopg.connect(admin, autocommit=True) as conn:
        name = sql.Identifier(str(make_url(url).database))
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone = {}").format(name, ZONE))
    yield url
    drop_test_database(url, admin)


def test_the_server_default_really_is_another_zone(new_york_database: str) -> None:
    with psycopg.connect(new_york_database) as conn:
        row = conn.execute("SHOW TimeZone").fetchone()
    assert row == (ZONE,)


async def test_engine_sessions_are_utc(new_york_database: str) -> None:
    engine = create_engine(new_york_database, pool_size=1)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SHOW TimeZone")) == "UTC"
            noon = await connection.scalar(
                text("SELECT TIMESTAMPTZ '2030-05-01 12:00:00+00'::text")
            )
    finally:
        await engine.dispose()
    assert noon == "2030-05-01 12:00:00+00"


async def test_job_queue_connections_are_utc(new_york_database: str) -> None:
    pool = make_pool(new_york_database, max_size=1)
    await pool.open(wait=True, timeout=10)
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute("SHOW TimeZone")).fetchone()
    finally:
        await pool.close()
    assert row == ("UTC",)


async def test_options_already_in_the_url_are_kept(new_york_database: str) -> None:
    # Added to the query the URL may already have (the embedded server's socket ``host``).
    parts = urlsplit(new_york_database)
    query = [*parse_qsl(parts.query), ("options", "-c statement_timeout=4321")]
    url = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SHOW TimeZone")) == "UTC"
            assert await connection.scalar(text("SHOW statement_timeout")) == "4321ms"
    finally:
        await engine.dispose()
