"""Alembic environment: run by ``rxroute migrate`` with the URL already resolved."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import rxroute.models  # noqa: F401 - registers every table on Base.metadata
from rxroute.db.base import Base
from rxroute.db.engine import keep_values_out_of_errors, sqlalchemy_url

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=sqlalchemy_url(config.get_main_option("rxroute.libpq_url") or ""),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(
        sqlalchemy_url(config.get_main_option("rxroute.libpq_url") or ""),
        poolclass=pool.NullPool,
        # A data migration's failing row can hold patient details: keep them out of errors.
        hide_parameters=True,
    )
    keep_values_out_of_errors(engine)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
