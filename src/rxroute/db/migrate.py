"""Programmatic Alembic: ``rxroute migrate`` and the test fixtures call these.

Migrations live inside the package (``rxroute/migrations``) so an installed rxroute can
migrate its database without a source checkout. The procrastinate job-queue schema is one of
the migrations, so one command brings a database fully up to date.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


def current_revision(libpq_url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(libpq_url), poolclass=pool.NullPool, hide_parameters=True)
    keep_values_out_of_errors(engine)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
