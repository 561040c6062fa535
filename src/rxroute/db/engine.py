"""Engine and session factory, and the one place a database URL is resolved.

Request handlers and jobs own their transaction (``session.begin()``); services only add and
flush. ``resolve_database_url`` turns settings into a URL, starting the embedded server when
none is configured. Every connection runs its session in UTC, whatever the server's default
zone, so a time read back is the instant that was stored. :func:`outage_reason` is the one
rule for "the database is out of reach" (as opposed to "the code is wrong"): the API answers
503 on it and the worker reconnects on it.

A database error never carries row values. Tracebacks are logged by uvicorn and procrastinate,
and the values bound to a failing statement, or quoted back by the server ("Key
(email)=(...) already exists", "Failing row contains (...)"), can be patient details. Every
engine is created with ``hide_parameters=True`` and :func:`keep_values_out_of_errors`, which
cuts the server's DETAIL, HINT and CONTEXT out of the error's text and masks the value a
data error quotes. The full diagnostics stay on the exception (``orig.diag``) for code
that needs them; only the text that gets printed changes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import sqlalchemy.exc
from psycopg_pool import PoolTimeout
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext, make_url
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


#: libpq ``options`` that make every session's ``TimeZone`` UTC.
UTC_SESSION_OPTION = "-c TimeZone=UTC"


def session_options(libpq_url: str) -> str:
    """The URL's own libpq ``options`` (if any) with the session time zone forced to UTC.

    Passed as a connect argument it replaces the URL's ``options``, so those are kept here.
    """
    existing = make_url(sqlalchemy_url(libpq_url)).query.get("options")
    if isinstance(existing, tuple):
        existing = " ".join(existing)
    return f"{existing} {UTC_SESSION_OPTION}" if existing else UTC_SESSION_OPTION


def create_engine(libpq_url: str, *, pool_size: int = 10, pre_ping: bool = False) -> AsyncEngine:
    """The process's engine: ``pool_size`` connections, kept open once opened, and no more.

    No overflow: SQLAlchemy closes an overflow connection as soon as it is returned, so a
    pool with overflow opens and closes PostgreSQL sessions after every burst (each costs
    the server a process and the client a few milliseconds, and they came with every p99
    spike in the webhook benchmark). A burst beyond the pool waits for a connection.
    ``pre_ping``: one round trip per checkout to notice a connection the server dropped;
    off, the first statement on such a connection fails (the request answers 503, a job is
    retried) and SQLAlchemy replaces the pool's connections.
    """
    engine = create_async_engine(
        sqlalchemy_url(libpq_url),
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=pre_ping,
        # Bound values can be patient details: never put them in an error's text.
        hide_parameters=True,
        connect_args={"options": session_options(libpq_url)},
    )
    keep_values_out_of_errors(engine.sync_engine)
    return engine


#: A quoted stretch of a data error's message: the offending value ("invalid input syntax
#: for type uuid: \"...\""). Greedy, so a value with a quote inside is masked whole.
_QUOTED = re.compile(r'".*"', re.DOTALL)


def terse_database_message(error: psycopg.Error) -> str:
    """The server's error without its DETAIL, HINT and CONTEXT, or any quoted value.

    Kept: the primary message (for a data exception, SQLSTATE class 22, with its quoted
    value masked), the SQLSTATE, and the schema names the server reports (table, column,
    constraint, type) - enough to find the bug, nothing of the row.
    """
    diag = error.diag
    state = error.sqlstate or ""
    primary = diag.message_primary or type(error).__name__
    if state.startswith("22"):
        primary = _QUOTED.sub('"<value>"', primary)
    names = [
        f"{label} {value}"
        for label, value in (
            ("table", diag.table_name),
            ("column", diag.column_name),
            ("constraint", diag.constraint_name),
            ("type", diag.datatype_name),
        )
        if value
    ]
    where = f"; {', '.join(names)}" if names else ""
    return f"{primary} (SQLSTATE {state}){where}"


def scrub_server_error(error: BaseException) -> str | None:
    """Rewrite a server error's text to :func:`terse_database_message`; the new text.

    Only errors the server reported: a client-side connection error (no SQLSTATE) names a
    host, never a row, and outage_reason reads its text. For raw psycopg use (the job
    queue's pool); errors raised through an engine are rewritten by its own listener.
    """
    if not isinstance(error, psycopg.Error) or not error.sqlstate:
        return None
    message = terse_database_message(error)
    error.args = (message,)
    return message


def _scrub_error(context: ExceptionContext) -> None:
    original = context.original_exception
    message = scrub_server_error(original)
    if message is None:
        return
    wrapped = context.sqlalchemy_exception
    if wrapped is not None:
        kind = type(original)
        wrapped.args = (f"({kind.__module__}.{kind.__name__}) {message}",)


def keep_values_out_of_errors(engine: Engine) -> None:
    """Rewrite every server error raised through ``engine`` to :func:`terse_database_message`.

    For engines created elsewhere (Alembic's); :func:`create_engine` calls it itself.
    """
    if not event.contains(engine, "handle_error", _scrub_error):
        event.listen(engine, "handle_error", _scrub_error)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with sessionmaker() as session, session.begin():
        yield session


#: SQLSTATE classes and codes that mean the server or the connection is gone, not the query:
#: connection exceptions (08), operator intervention (57P01 admin shutdown, 57P02 crash
#: shutdown, 57P03 cannot connect now, 57P04 database dropped), too many connections (53300).
_OUTAGE_SQLSTATE_PREFIXES = ("08", "57P")
_OUTAGE_SQLSTATES = {"53300"}


def _psycopg_outage(error: psycopg.Error) -> str | None:
    if isinstance(error, PoolTimeout):
        return "no database connection within the pool timeout"
    if isinstance(error, psycopg.InterfaceError):
        return "the database connection is closed"
    if not isinstance(error, psycopg.OperationalError):
        return None
    state = error.sqlstate
    if state is None:  # raised by the client: the connection failed or was lost
        message = str(error)
        if "Connection refused" in message:
            return "connection refused"
        if "not currently accepting connections" in message:
            return "the database is not accepting connections"
        return "connection failed or lost"
    if state in _OUTAGE_SQLSTATES:
        return "too many connections"
    if state.startswith("57P"):
        return "the server terminated the connection"
    if state.startswith(_OUTAGE_SQLSTATE_PREFIXES):
        return "connection failed or lost"
    return None


def outage_reason(error: BaseException) -> str | None:
    """Why the database is out of reach, if ``error`` says so; ``None`` for any other error.

    Follows SQLAlchemy's ``orig`` and the exception chain (procrastinate wraps psycopg errors
    in its own ``ConnectorException``). The reason names no host, user or query: it is shown
    on ``/readyz`` and in logs.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.TimeoutError):
            return "no database connection within the pool timeout"
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return "connection failed or lost"
        if isinstance(current, psycopg.Error):
            reason = _psycopg_outage(current)
            if reason is not None:
                return reason
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
        pending.extend([current.__cause__, current.__context__])
    return None
