"""Throwaway databases for tests and benchmarks.

Each run gets its own freshly created database, on the server named by a URL (CI's local
PostgreSQL) or on an embedded server under ``var_dir``, and drops it afterwards, so runs never
see each other's data and never touch a real database's tables.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from rxroute.db.embedded import start_embedded


def create_scratch_database(prefix: str, server_url: str | None, var_dir: Path) -> tuple[str, str]:
    """(url of a new empty database, admin url to drop it with)."""
    admin = server_url or start_embedded(var_dir, database="postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parsed = make_url(admin)
    if parsed.host is None and "host=" in admin:  # embedded: a Unix-socket URL
        return admin.replace(f"/{parsed.database}?", f"/{name}?", 1), admin
    return parsed.set(database=name).render_as_string(hide_password=False), admin


def drop_scratch_database(url: str, admin_url: str) -> None:
    name = make_url(url).database
    if not name:
        return
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
