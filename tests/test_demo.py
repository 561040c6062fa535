"""``rxroute demo``'s settings: Region A can be pointed elsewhere, so a failure can be staged.

Tested at the level of the function that builds the settings (and the command's parsing),
without booting the demo: every path that could boot it is fenced off below.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rxroute import demo
from rxroute.channels.email.errors import EmailRejected, EmailRetryable
from rxroute.channels.email.smtp import send_email
from rxroute.cli import app
from rxroute.mailcatcher import MailCatcher

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
    assert seen == {"host": "127.0.0.1", "port": 8000, "smtp_port": 2526}


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
