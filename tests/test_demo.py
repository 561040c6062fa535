"""``rxroute demo``'s settings: Region A can be pointed elsewhere, so a failure can be staged.

Tested at the level of the function that builds the settings (and the command's parsing),
without booting the demo: every path that could boot it is fenced off below.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from rxroute import demo
from rxroute.channels.email.errors import EmailRejected, EmailRetryable
from rxroute.channels.email.smtp import send_email
from rxroute.cli import app
from rxroute.cli_support import CliError
from rxroute.config import Environment, Settings
from rxroute.mailcatcher import MailCatcher
from rxroute.seed import data
from tests.conftest import create_test_database, drop_test_database

RXROUTE = str(Path(sys.executable).parent / "rxroute")
DEMO = {"host": "127.0.0.1", "port": 8000, "sandbox_port": 8100, "smtp_port": 8025}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No SMTP overrides from the caller's shell, and no ``.env`` from the checkout."""
    for name in list(os.environ):
        if name.upper().startswith("RXROUTE_SMTP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def never_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a CLI test got past validation, fail instead of starting servers."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the demo would have started")

    monkeypatch.setattr(demo, "ensure_port_free", refuse)


def test_by_default_region_a_goes_to_the_mail_catcher() -> None:
    settings = demo.demo_settings(**DEMO)
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 8025)
    assert settings.erx_base_url == "http://127.0.0.1:8100"
    assert settings.public_url == "http://127.0.0.1:8000"


def test_smtp_port_flag_moves_the_catcher_and_region_a_with_it() -> None:
    settings = demo.demo_settings(**{**DEMO, "smtp_port": 2526})
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 2526)


def test_environment_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXROUTE_SMTP_PORT", "2999")
    settings = demo.demo_settings(**{**DEMO, "smtp_port": 2526})
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 2999)
    monkeypatch.setenv("RXROUTE_SMTP_HOST", "mail.example.com")
    settings = demo.demo_settings(**DEMO)
    assert (settings.smtp_host, settings.smtp_port) == ("mail.example.com", 2999)


def test_override_names_match_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("rxroute_smtp_port", "2998")
    assert demo.smtp_overrides_in_environment() == {"RXROUTE_SMTP_PORT"}
    assert demo.demo_settings(**DEMO).smtp_port == 2998


def test_dot_env_does_not_redirect_the_demo(tmp_path: Path) -> None:
    # A developer's .env aimed at a real relay must not make the demo email pharmacies.
    (tmp_path / ".env").write_text(
        "RXROUTE_SMTP_HOST=smtp.example.com\nRXROUTE_SMTP_PORT=587\n", encoding="utf-8"
    )
    settings = demo.demo_settings(**DEMO)
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 8025)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "prescriptions@example.com"
    message["To"] = "pharmacy@example.com"
    message["Subject"] = "Prescription"
    message.set_content("attached")
    return message


async def test_staged_failures_reach_region_a_through_the_demo_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The two recipes of the README, end to end as far as the SMTP client."""
    with MailCatcher("127.0.0.1", 0, 0) as catcher:
        settings = demo.demo_settings(**{**DEMO, "smtp_port": catcher.smtp_port})
        catcher.faults.arm("refuse_permanent")
        with pytest.raises(EmailRejected):
            await send_email(_message(), host=settings.smtp_host, port=settings.smtp_port)
        assert catcher.messages() == []

    monkeypatch.setenv("RXROUTE_SMTP_PORT", str(_closed_port()))
    settings = demo.demo_settings(**DEMO)
    with pytest.raises(EmailRetryable, match="refused the connection"):
        await send_email(_message(), host=settings.smtp_host, port=settings.smtp_port, timeout=5)


def test_command_passes_smtp_port(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(app, ["demo", "--smtp-port", "2526"])
    assert result.exit_code == 0, result.output
    assert seen == {"host": "127.0.0.1", "port": 8000, "smtp_port": 2526, "reset": False}


@pytest.mark.usefixtures("never_boot")
def test_a_bad_override_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXROUTE_SMTP_PORT", "twenty-five")
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "RXROUTE_SMTP_PORT" in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("never_boot")
def test_smtp_port_clashing_with_another_demo_port_is_refused() -> None:
    result = CliRunner().invoke(app, ["demo", "--smtp-port", "8026"])
    assert result.exit_code == 1
    assert "--smtp-port and the mail catcher web port are both port 8026" in " ".join(
        result.output.split()
    )
    result = CliRunner().invoke(app, ["demo", "--smtp-port", "8000", "--port", "8000"])
    assert result.exit_code == 1
    assert "--port and --smtp-port are both port 8000" in " ".join(result.output.split())


# --- rxroute demo --reset ------------------------------------------------------------------


@pytest.fixture
def scratch_database() -> Iterator[tuple[str, str]]:
    """(url, admin url) of a fresh database on the test server, dropped afterwards."""
    url, admin = create_test_database("rxroute_demo_reset")
    yield url, admin
    drop_test_database(url, admin)


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def _fill(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE leftover (id int)")
        conn.execute("INSERT INTO leftover VALUES (1)")


def test_reset_empties_the_embedded_database_and_the_sandbox_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scratch_database: tuple[str, str]
) -> None:
    """The embedded server stands in as the test server: what is dropped and recreated is the
    demo's database, and the sandbox's state file goes with it."""
    url, admin = scratch_database
    name = make_url(url).database
    assert name
    _fill(url)
    # A connection left open (a worker of a demo still running) does not stop the reset.
    held = psycopg.connect(url)
    started: list[Path] = []

    def embedded(var_dir: Path, database: str = "rxroute") -> str:
        started.append(var_dir)
        assert database == "postgres", "the reset connects to the server, not to the demo db"
        return admin

    monkeypatch.setattr(demo, "start_embedded", embedded)
    monkeypatch.setattr(demo, "DATABASE_NAME", name)
    settings = Settings(_env_file=None, var_dir=tmp_path / "var")
    assert settings.uses_embedded_database
    state = demo.sandbox_state_path(settings)
    state.parent.mkdir(parents=True)
    state.write_text('{"version": 1, "prescriptions": []}', encoding="utf-8")
    try:
        demo.reset_demo_data(settings)
    finally:
        held.close()
    assert started == [tmp_path / "var"]
    assert _tables(url) == []
    assert not state.exists()
    # Run again with nothing to delete: still fine.
    demo.reset_demo_data(settings)


def test_recreate_database_keeps_other_databases(scratch_database: tuple[str, str]) -> None:
    url, admin = scratch_database
    other_url, other_admin = create_test_database("rxroute_demo_other")
    try:
        _fill(url)
        _fill(other_url)
        name = make_url(url).database
        assert name
        demo.recreate_database(admin, name)
        assert _tables(url) == []
        assert _tables(other_url) == ["leftover"]
    finally:
        drop_test_database(other_url, other_admin)


@pytest.mark.usefixtures("never_boot")
def test_reset_refuses_a_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXROUTE_DATABASE_URL", "postgresql://someone@db.example.com/shared")
    result = CliRunner().invoke(app, ["demo", "--reset"])
    assert result.exit_code == 1
    assert "RXROUTE_DATABASE_URL" in result.output
    assert "Traceback" not in result.output


def test_reset_refuses_outside_development() -> None:
    settings = Settings(_env_file=None)
    production = settings.model_copy(update={"environment": Environment.PRODUCTION})
    with pytest.raises(CliError, match="RXROUTE_ENVIRONMENT is production"):
        demo.check_reset_allowed(production)


def test_command_passes_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(app, ["demo", "--reset"])
    assert result.exit_code == 0, result.output
    assert seen["reset"] is True


def test_the_demo_sandbox_keeps_its_state_beside_the_database(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path / "v")
    assert demo.sandbox_state_path(settings) == tmp_path / "v" / "sandbox-state.json"
    assert demo.sandbox_state_path(settings).parent == settings.pg_data_dir.parent


# --- rxroute seed --patient ------------------------------------------------------------------


def _drafts_of(url: str, email: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT p.region, count(*) FROM prescriptions p"
            " JOIN users u ON u.patient_id = p.patient_id"
            " WHERE u.email = %s AND p.status = 'draft' GROUP BY p.region",
            (email,),
        ).fetchall()
    return {region: count for region, count in rows}


def _seed(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``rxroute seed`` in its own process, as a user runs it: the command starts and stops
    the process-wide runtime, which must not be this test session's."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    environment.update(RXROUTE_DATABASE_URL=url, COLUMNS="200")
    return subprocess.run(
        [RXROUTE, "seed", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_seed_gives_drafts_to_a_named_patient(scratch_database: tuple[str, str]) -> None:
    url, _ = scratch_database
    first = _seed(url)
    assert first.returncode == 0, first.stderr
    before = _drafts_of(url, data.DEMO_PATIENT_EMAIL)
    assert before == {"A": 3, "B": 3}

    result = _seed(url, "--patient", data.DEMO_PATIENT_EMAIL, "-n", "5")
    assert result.returncode == 0, result.stderr
    assert "added 5 fresh draft prescriptions for patient" in result.stdout
    assert _drafts_of(url, data.DEMO_PATIENT_EMAIL) == {"A": 5, "B": 6}

    # Without -n, a demo's worth.
    result = _seed(url, "--patient", data.DEMO_PATIENT_EMAIL)
    assert result.returncode == 0, result.stderr
    assert sum(_drafts_of(url, data.DEMO_PATIENT_EMAIL).values()) == 11 + 6


def test_seed_patient_errors_name_the_option(scratch_database: tuple[str, str]) -> None:
    url, _ = scratch_database
    unknown = _seed(url, "--patient", "nobody.known@example.com")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        "error: --patient: no patient has that email (the demo patient is patient@example.com)"
    ]
    assert "nobody.known" not in unknown.stdout + unknown.stderr
    assert _drafts_of(url, data.DEMO_PATIENT_EMAIL) == {"A": 3, "B": 3}

    # Refused before the database is touched.
    too_many = CliRunner().invoke(app, ["seed", "--patient", data.DEMO_PATIENT_EMAIL, "-n", "101"])
    assert too_many.exit_code == 1
    assert "--prescriptions: at most 100" in " ".join(too_many.output.split())


async def test_the_banner_comes_once_the_app_listens() -> None:
    """The address the banner names answers as soon as the banner appears (it was printed
    before the server bound its port, and the first page load was refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answered: list[bool] = []

    def announce() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            answered.append(True)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("no request is made")

    server = demo._AnnouncingServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"),
        announce,
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if answered or serving.done():
            break
        await asyncio.sleep(0.01)
    server.should_exit = True
    await serving
    assert answered == [True]
