"""Migrations on a fresh database: up, down, up again, and the models match them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

import rxroute.models  # noqa: F401 - registers every table
from rxroute.db import migrate
from rxroute.db.base import Base
from rxroute.db.engine import sqlalchemy_url
from tests.conftest import create_test_database, drop_test_database

RXROUTE_TABLES = {
    "clinics",
    "patients",
    "pharmacies",
    "prescribers",
    "prescriptions",
    "prescription_items",
    "prescription_status_events",
    "delivery_attempts",
    "inbound_webhook_events",
    "users",
}


@pytest.fixture
def fresh_url() -> Iterator[str]:
    url, admin = create_test_database("rxroute_migrations")
    yield url
    drop_test_database(url, admin)


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {row[0] for row in rows}


def _procrastinate_leftovers(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        functions = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = current_schema() "
            "AND (p.proname LIKE 'procrastinate%' OR p.proname LIKE 'rxroute%')"
        ).fetchall()
        types = conn.execute(
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate%'"
        ).fetchall()
    return [row[0] for row in functions + types]


def _include(name: str | None, type_: str, parent_names: Any) -> bool:
    if type_ == "table":
        return name is not None and not name.startswith("procrastinate")
    table = parent_names.get("table_name") or ""
    return not str(table).startswith("procrastinate")


def _differences(url: str) -> list[Any]:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "include_name": _include,
                    "compare_type": True,
                    "compare_server_default": True,
                },
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    assert migrate.current_revision(fresh_url) is None

    migrate.upgrade(fresh_url)
    assert migrate.current_revision(fresh_url) == migrate.head_revision()
    tables = _tables(fresh_url)
    assert tables >= RXROUTE_TABLES
    assert "procrastinate_jobs" in tables

    migrate.downgrade(fresh_url, "base")
    assert migrate.current_revision(fresh_url) is None
    left = _tables(fresh_url) - {"alembic_version"}
    assert left == set(), f"left behind after downgrade: {sorted(left)}"
    assert _procrastinate_leftovers(fresh_url) == []

    migrate.upgrade(fresh_url)
    assert migrate.current_revision(fresh_url) == migrate.head_revision()
    assert _tables(fresh_url) == tables


def test_step_by_step(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, "0001")
    tables = _tables(fresh_url)
    assert tables >= RXROUTE_TABLES
    assert not any(t.startswith("procrastinate") for t in tables)
    migrate.upgrade(fresh_url, "0002")
    assert "procrastinate_jobs" in _tables(fresh_url)
    migrate.downgrade(fresh_url, "0001")
    assert not any(t.startswith("procrastinate") for t in _tables(fresh_url))
    assert _tables(fresh_url) >= RXROUTE_TABLES


def test_models_match_migrations(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    differences = _differences(fresh_url)
    assert differences == [], "models and migrations differ:\n" + "\n".join(map(repr, differences))


def test_comparison_would_notice_a_difference(fresh_url: str) -> None:
    """The comparison above is not vacuous: a missing table shows up as a difference."""
    migrate.upgrade(fresh_url, "0001")
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("DROP TABLE delivery_attempts")
    differences = _differences(fresh_url)
    assert any(d[0] == "add_table" and d[1].name == "delivery_attempts" for d in differences)
