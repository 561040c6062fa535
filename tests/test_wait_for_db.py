"""``--wait-for-db``: serve, worker and migrate wait (bounded) for a database that is not up yet.

Real processes against a real port: nothing listening, then a TCP proxy to the test
database that appears while the command waits, as a database does under an orchestrator.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rxroute.db.wait import describe_database
from tests.conftest import create_test_database, drop_test_database
from tests.test_cli import RXROUTE, _one_error_line, _run

PASSWORD = "not-in-any-line-7f3a"


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _waiting_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("waiting for the database")]


@pytest.fixture
def fresh_database() -> Iterator[str]:
    url, admin = create_test_database("rxroute_wait")
    yield url
    drop_test_database(url, admin)


class Proxy:
    """Forwards TCP connections on ``port`` to the database (TCP or Unix socket)."""

    def __init__(self, port: int, database_url: str) -> None:
        parts = conninfo_to_dict(database_url)
        host = str(parts.get("host") or "127.0.0.1")
        db_port = int(parts.get("port") or 5432)
        self.target: tuple[int, str | tuple[str, int]] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{db_port}")
            if host.startswith("/")
            else (socket.AF_INET, (host, db_port))
        )
        self.listener = socket.create_server(("127.0.0.1", port))
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(self.target[0], socket.SOCK_STREAM)
            upstream.connect(self.target[1])
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def via_port(database_url: str, port: int) -> str:
    """The database URL reached over TCP at 127.0.0.1:``port`` (the proxy)."""
    tcp = make_conninfo(database_url, host="127.0.0.1", port=str(port))
    parts = conninfo_to_dict(tcp)
    auth = parts["user"] + (f":{parts['password']}" if parts.get("password") else "")
    return f"postgresql://{auth}@127.0.0.1:{port}/{parts['dbname']}"


@pytest.mark.parametrize("command", ["migrate", "worker", "serve"])
def test_gives_up_after_the_bound_with_one_line_per_retry(tmp_path: Path, command: str) -> None:
    port = _unused_port()
    url = f"postgresql://rx:{PASSWORD}@127.0.0.1:{port}/rxroute"
    args = [command, "--wait-for-db", "3"]
    if command == "serve":
        args += ["--port", str(_unused_port())]
    started = time.monotonic()
    result = _run(args, tmp_path, RXROUTE_DATABASE_URL=url)
    elapsed = time.monotonic() - started
    assert PASSWORD not in result.stderr + result.stdout
    waiting = _waiting_lines(result.stderr)
    assert len(waiting) >= 3, result.stderr
    for line in waiting:
        assert f"rx@127.0.0.1:{port}/rxroute (connection refused)" in line
    assert "4 s left" not in result.stderr
    other = [line for line in result.stderr.splitlines() if line not in waiting]
    assert len(other) == 1, result.stderr
    assert other[0].startswith("error: the database at ")
    assert "within 3 s (connection refused" in other[0]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert 3 <= elapsed < 20, elapsed


def test_without_the_flag_fails_at_once(tmp_path: Path) -> None:
    port = _unused_port()
    started = time.monotonic()
    result = _run(["migrate"], tmp_path, RXROUTE_DATABASE_URL=f"postgresql://x@127.0.0.1:{port}/d")
    assert time.monotonic() - started < 15
    assert "cannot reach the database" in _one_error_line(result)
    assert not _waiting_lines(result.stderr)


def test_proceeds_at_once_when_the_database_is_up(tmp_path: Path, fresh_database: str) -> None:
    started = time.monotonic()
    result = _run(["migrate", "--wait-for-db", "20"], tmp_path, RXROUTE_DATABASE_URL=fresh_database)
    assert result.returncode == 0, result.stderr
    assert not _waiting_lines(result.stderr), result.stderr
    assert "database at revision" in result.stdout
    assert time.monotonic() - started < 15


def test_migrates_once_the_database_appears(tmp_path: Path, fresh_database: str) -> None:
    port = _unused_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    clean["RXROUTE_DATABASE_URL"] = via_port(fresh_database, port)
    process = subprocess.Popen(
        [RXROUTE, "migrate", "--wait-for-db", "30"],
        cwd=tmp_path,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    # Only start the database's port once the command has said it is waiting.
    first = process.stderr.readline()
    assert first.startswith("waiting for the database at "), first
    assert f"127.0.0.1:{port}/" in first
    proxy = Proxy(port, fresh_database)
    try:
        stdout, rest = process.communicate(timeout=60)
    finally:
        proxy.close()
    assert process.returncode == 0, first + rest
    assert "database at revision" in stdout
    for line in rest.splitlines():
        assert line.startswith("waiting for the database at "), rest
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() is not None


def test_describe_database_never_shows_the_password() -> None:
    described = describe_database(f"postgresql://rx:{PASSWORD}@db.internal:6543/rxroute")
    assert described == "rx@db.internal:6543/rxroute"
    assert describe_database("postgresql:///rxroute?host=/run/pg") == "/run/pg:5432/rxroute"
