"""Wait, for a bounded time, until the database accepts connections (``--wait-for-db``).

An orchestrator starts things in any order: the web tier, the workers and the migration Job
may all start before PostgreSQL (or its DNS name) is up. Each command then waits with this
one function instead of failing at once and being restarted in a crash loop, printing one
line per retry that names what it awaits (never the URL's password) and why, and giving up
with one line when the time is over. ``0`` seconds keeps the old behaviour: no wait, the
command's own first connection fails with its usual one-line error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict

from rxroute.db.engine import outage_reason

#: Delays between tries: doubling from the first up to the cap (the bound keeps a waiting
#: pod from missing a database that comes up between two long sleeps).
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 5.0
#: libpq's connect_timeout (whole seconds, at least 2): one try never outlives this.
CONNECT_TIMEOUT_SECONDS = 5
#: What a failed connection's message says, and what it means for waiting: a reason to
#: retry (the server, its DNS name, the database or the role may still be on their way:
#: an operator or an init script creates the last two), or None for a mistake that waiting
#: cannot fix (wrong credentials), which fails at once.
_CONNECT_FAILURES: tuple[tuple[str, str | None], ...] = (
    ("password authentication failed", None),
    ("no pg_hba.conf entry", None),
    ("failed to resolve host", "host name not resolvable yet"),
    ("the database system is starting up", "the server is starting up"),
    ("the database system is shutting down", "the server is shutting down"),
    ("the database system is in recovery mode", "the server is recovering"),
)


class DatabaseNotReady(Exception):
    """The database did not accept a connection in time, or refused our credentials."""


def describe_database(libpq_url: str) -> str:
    """``user@host:port/dbname`` for messages: no password, whatever the URL carried."""
    try:
        parts = conninfo_to_dict(libpq_url)
    except psycopg.ProgrammingError:
        return "the database in RXROUTE_DATABASE_URL"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    user = f"{parts['user']}@" if parts.get("user") else ""
    dbname = str(parts.get("dbname") or "")
    return f"{user}{host}:{port}/{dbname}"


def _why_not_yet(exc: psycopg.Error) -> str | None:
    """Why a connection failed if waiting may help; None when waiting cannot help.

    psycopg reports every failure to connect without a SQLSTATE, so the server's message
    is all there is to tell them apart.
    """
    message = str(exc)
    for marker, reason in _CONNECT_FAILURES:
        if marker in message:
            return reason
    if "does not exist" in message:
        if 'FATAL:  role "' in message:
            return "the role does not exist yet"
        return "the database does not exist yet"
    return outage_reason(exc)


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def wait_for_database(
    libpq_url: str,
    seconds: float,
    *,
    report: Callable[[str], None] = _stderr_line,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once ``libpq_url`` accepts a connection; raise :class:`DatabaseNotReady`
    when ``seconds`` pass first. With ``seconds <= 0`` return at once without trying."""
    if seconds <= 0:
        return
    target = describe_database(libpq_url)
    deadline = clock() + seconds
    delay = FIRST_DELAY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        left = deadline - clock()
        timeout = max(2, min(CONNECT_TIMEOUT_SECONDS, int(left) + 1))
        try:
            with psycopg.connect(libpq_url, connect_timeout=timeout, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as exc:
            reason = _why_not_yet(exc)
            if reason is None:
                if outage_reason(exc) is None:
                    raise  # not a connection failure: the command's own error line
                raise DatabaseNotReady(
                    f"the database at {target} refused rxroute's credentials; check the "
                    f"user and password in RXROUTE_DATABASE_URL"
                ) from exc
        left = deadline - clock()
        if left <= 0:
            raise DatabaseNotReady(
                f"the database at {target} did not accept connections within {seconds:g} s "
                f"({reason}, {attempt} tries); check RXROUTE_DATABASE_URL and the server"
            )
        pause = min(delay, left)
        report(
            f"waiting for the database at {target} ({reason}); try {attempt + 1} in "
            f"{pause:.1f} s, {left:.0f} s left"
        )
        sleep(pause)
        delay = min(delay * 2, MAX_DELAY_SECONDS)
