"""Engine and session factory, and the one place a database URL is resolved.

Request handlers and jobs own their transaction (``session.begin()``); services only add and
flush. ``resolve_database_url`` turns settings into a URL, starting the embedded server when
none is configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from rxroute.config import Settings
from rxroute.db.embedded import start_embedded


class DatabaseConfigError(ValueError):
    """The configured database URL cannot be used; the message names the variable."""


def resolve_database_url(settings: Settings) -> str:
    """A plain libpq URL (``postgresql://...``) for this process."""
    if settings.uses_embedded_database:
        return start_embedded(settings.var_dir)
    url = settings.database_url
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url[len(prefix) :]
    try:
        make_url(url)
    except ArgumentError as exc:
        raise DatabaseConfigError(
            "RXROUTE_DATABASE_URL is not a valid URL; expected "
            "postgresql://user:password@host:5432/database"
        ) from exc
    return url


def sqlalchemy_url(libpq_url: str) -> str:
    return "postgresql+psycopg://" + libpq_url.removeprefix("postgresql://")


def create_engine(libpq_url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(libpq_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with sessionmaker() as session, session.begin():
        yield session
