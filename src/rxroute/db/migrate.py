"""Programmatic Alembic: ``rxroute migrate`` and the test fixtures call these.

Migrations live inside the package (``rxroute/migrations``) so an installed rxroute can
migrate its database without a source checkout. The procrastinate job-queue schema is one of
the migrations, so one command brings a database fully up to date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, pool

from rxroute.db.engine import keep_values_out_of_errors, sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(libpq_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("rxroute.libpq_url", libpq_url.replace("%", "%%"))
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s",
    )
    return config


def upgrade(libpq_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(libpq_url), revision)


def downgrade(libpq_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(libpq_url), revision)


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/unused"))
    return script.get_current_head()


def schema_position(current: str | None) -> Literal["at_head", "behind", "ahead"]:
    """Where the database's schema stands against this code's migrations.

    ``ahead`` means a revision this code does not know: one from a newer release, migrated
    before its code rolled out (or kept after a code rollback). Migrations keep the
    previous release working (expand, then contract a release later), so the older code
    still serves; only a schema *behind* the code is unusable.
    """
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/unused"))
    if current == script.get_current_head():
        return "at_head"
    if current is None:
        return "behind"
    try:
        script.get_revision(current)
    except CommandError:
        return "ahead"
    return "behind"


def current_revision(libpq_url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(libpq_url), poolclass=pool.NullPool, hide_parameters=True)
    keep_values_out_of_errors(engine)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
