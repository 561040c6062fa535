"""The ``rxroute`` command: a configuration problem is one line on stderr, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from rxroute.cli import app
from tests.conftest import create_test_database, drop_test_database

RXROUTE = str(Path(sys.executable).parent / "rxroute")


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    clean.update(env)
    clean["COLUMNS"] = "80"  # a long message must still be one line
    return subprocess.run(
        [RXROUTE, *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_malformed_database_url(tmp_path: Path) -> None:
    result = _run(["migrate"], tmp_path, RXROUTE_DATABASE_URL="mysql://root@localhost/rx")
    line = _one_error_line(result)
    assert "RXROUTE_DATABASE_URL" in line
    assert "PostgreSQL URL" in line
    assert not (tmp_path / "var").exists()


def test_unreachable_database_server(tmp_path: Path) -> None:
    result = _run(["migrate"], tmp_path, RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db")
    line = _one_error_line(result)
    assert "cannot reach the database" in line
    assert "RXROUTE_DATABASE_URL" in line


def test_unreachable_database_server_seed(tmp_path: Path) -> None:
    result = _run(["seed"], tmp_path, RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db")
    assert "cannot reach the database" in _one_error_line(result)


def test_placeholder_secret_in_production(tmp_path: Path) -> None:
    result = _run(
        ["migrate"],
        tmp_path,
        RXROUTE_ENVIRONMENT="production",
        RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db",
    )
    line = _one_error_line(result)
    assert "RXROUTE_ENCRYPTION_KEYS" in line
    assert "placeholder" in line


@pytest.fixture
def fresh_database() -> Iterator[str]:
    url, admin = create_test_database("rxroute_cli")
    yield url
    drop_test_database(url, admin)


@pytest.mark.parametrize("keys", ["", "not-a-fernet-key"], ids=["empty", "malformed"])
def test_bad_encryption_keys_refused_before_touching_the_database(
    tmp_path: Path, fresh_database: str, keys: str
) -> None:
    result = _run(
        ["seed"],
        tmp_path,
        RXROUTE_DATABASE_URL=fresh_database,
        RXROUTE_ENCRYPTION_KEYS=keys,
    )
    assert "RXROUTE_ENCRYPTION_KEYS" in _one_error_line(result)
    with psycopg.connect(fresh_database) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
    assert tables == (0,), "seed migrated the database before checking its keys"


def test_serve_with_empty_encryption_keys(tmp_path: Path) -> None:
    result = _run(
        ["serve", "--port", "1"],
        tmp_path,
        RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db",
        RXROUTE_ENCRYPTION_KEYS="",
    )
    assert "RXROUTE_ENCRYPTION_KEYS" in _one_error_line(result)


def test_serve_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = _run(
            ["serve", "--port", str(port)],
            tmp_path,
            RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db",
        )
    line = _one_error_line(result)
    assert f"127.0.0.1:{port} is already in use" in line
    assert "--port" in line


def _command_names() -> list[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return sorted(group.commands)


def test_expected_commands_exist() -> None:
    assert {"migrate", "seed", "serve", "worker", "demo"} <= set(_command_names())


def test_root_help() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for name in _command_names():
        assert name in result.output


@pytest.mark.parametrize("command", _command_names())
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert command in result.output


def test_help_as_a_real_process(tmp_path: Path) -> None:
    result = _run(["--help"], tmp_path)
    assert result.returncode == 0
    assert "migrate" in result.stdout


def test_worker_refuses_a_platform_deadline_too_close_to_the_stalled_interval(
    tmp_path: Path,
) -> None:
    result = _run(
        ["worker"],
        tmp_path,
        RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db",
        RXROUTE_STALLED_JOB_SECONDS="20",
        RXROUTE_PLATFORM_CALL_DEADLINE_SECONDS="18",
    )
    line = _one_error_line(result)
    assert "RXROUTE_PLATFORM_CALL_DEADLINE_SECONDS (18)" in line
    assert "RXROUTE_STALLED_JOB_SECONDS (20)" in line
