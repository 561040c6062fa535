"""The one rule for "the database is out of reach": outages yes, bugs and conflicts no."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy.exc
from procrastinate.exceptions import ConnectorException
from psycopg import errors
from psycopg_pool import PoolTimeout

from rxroute.db.engine import outage_reason

REFUSED = psycopg.OperationalError(
    'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'
)
NOT_ACCEPTING = psycopg.OperationalError(
    'connection failed: FATAL:  database "x" is not currently accepting connections'
)


def _wrapped(error: BaseException) -> ConnectorException:
    """As procrastinate raises it: ``raise ConnectorException from error``."""
    try:
        raise ConnectorException from error
    except ConnectorException as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (REFUSED, "connection refused"),
        (NOT_ACCEPTING, "the database is not accepting connections"),
        (psycopg.OperationalError("the connection is closed"), "connection failed or lost"),
        (errors.AdminShutdown("terminating connection"), "the server terminated the connection"),
        (errors.CannotConnectNow("starting up"), "the server terminated the connection"),
        (errors.ConnectionFailure("gone"), "connection failed or lost"),
        (errors.TooManyConnections("too many"), "too many connections"),
        (psycopg.InterfaceError("the connection is closed"), "the database connection is closed"),
        (PoolTimeout("couldn't get a connection after 10 sec"), "no database connection"),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), "no database connection"),
        (
            sqlalchemy.exc.OperationalError("SELECT 1", {}, errors.AdminShutdown("x")),
            "the server terminated the connection",
        ),
        (_wrapped(errors.AdminShutdown("x")), "the server terminated the connection"),
    ],
)
def test_outages_are_recognised(error: BaseException, reason: str) -> None:
    found = outage_reason(error)
    assert found is not None
    assert found.startswith(reason)


@pytest.mark.parametrize(
    "error",
    [
        errors.UniqueViolation("duplicate key"),
        errors.SerializationFailure("could not serialize"),
        errors.QueryCanceled("statement timeout"),
        errors.UndefinedTable("no such table"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, errors.UniqueViolation("dup")),
        sqlalchemy.exc.ProgrammingError("SELECT", {}, errors.SyntaxError("syntax")),
        _wrapped(errors.RaiseException("Job was not found")),
        ValueError("not a database error"),
        TimeoutError("a platform call's deadline"),
    ],
)
def test_other_errors_are_not_outages(error: BaseException) -> None:
    assert outage_reason(error) is None


def test_no_host_or_user_in_the_reason() -> None:
    reason = outage_reason(REFUSED)
    assert reason is not None
    assert "127.0.0.1" not in reason
    assert "port" not in reason
