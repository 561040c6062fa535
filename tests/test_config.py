"""Settings: RXROUTE_ environment variables, and unsafe values refused at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rxroute.config import Environment, Settings, get_settings

REAL_SECRETS: dict[str, str] = {
    "encryption_keys": "kWm0bnM6S0v7hI1b0oS5zYdCq8m0x3yQ2tQh8a4JfVg=",
    "session_secret": "b3f1c2a9e8d7-real-session-secret",
    "csrf_secret": "5d4c3b2a1f0e-real-csrf-secret",
    "link_secret": "e0f1a2b3c4d5-real-link-secret",
    "webhook_secret": "9a8b7c6d5e4f-real-webhook-secret",
    "erx_client_secret": "0f1e2d3c4b5a-real-client-secret",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no stray .env file is read
    for name in list(os.environ):
        if name.startswith("RXROUTE_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _message(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


def test_defaults_are_development_and_valid() -> None:
    settings = _settings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.uses_embedded_database
    assert settings.channel_for_region("a") == "email"
    assert settings.channel_for_region("B") == "erx"
    assert settings.channel_for_region("Z") is None
    assert settings.webhook_url == "http://127.0.0.1:8000/webhooks/erx"


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_real_secrets_accepted_outside_development(environment: str) -> None:
    settings = _settings(environment=environment, **REAL_SECRETS)
    assert settings.environment.value == environment


@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("encryption_keys", "RXROUTE_ENCRYPTION_KEYS"),
        ("session_secret", "RXROUTE_SESSION_SECRET"),
        ("webhook_secret", "RXROUTE_WEBHOOK_SECRET"),
        ("erx_client_secret", "RXROUTE_ERX_CLIENT_SECRET"),
    ],
)
def test_placeholder_refused_outside_development(
    environment: str, field: str, variable: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(environment=environment, **{**REAL_SECRETS, field: "change-me-please"})
    message = _message(caught)
    assert variable in message
    assert "placeholder" in message
    # Every other secret is real: only this variable is named.
    others = {
        "RXROUTE_ENCRYPTION_KEYS",
        "RXROUTE_SESSION_SECRET",
        "RXROUTE_WEBHOOK_SECRET",
        "RXROUTE_ERX_CLIENT_SECRET",
    } - {variable}
    assert not any(other in message for other in others)


def test_demo_defaults_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="RXROUTE_ENCRYPTION_KEYS"):
        _settings(environment="production")


def test_empty_secret_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="RXROUTE_SESSION_SECRET is empty"):
        _settings(environment="production", **{**REAL_SECRETS, "session_secret": "  "})


def test_placeholders_allowed_in_development() -> None:
    settings = _settings(session_secret="change-me")
    assert settings.session_secret.get_secret_value() == "change-me"


@pytest.mark.parametrize("environment", ["development", "production"])
def test_empty_webhook_secret_refused_even_in_development(environment: str) -> None:
    values = {**REAL_SECRETS, "webhook_secret": ""}
    with pytest.raises(ValidationError, match="RXROUTE_WEBHOOK_SECRET"):
        _settings(environment=environment, **values)


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/db", "sqlite:///x.db", "localhost:5432/db", "http://db"],
)
def test_malformed_database_url_refused(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(database_url=url)
    assert "PostgreSQL URL" in _message(caught)
    assert caught.value.errors()[0]["loc"] == ("database_url",)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@127.0.0.1:5432/rxroute",
        "postgres://u@h/db",
        "postgresql+psycopg://u@h/db",
    ],
)
def test_postgres_urls_accepted(url: str) -> None:
    settings = _settings(database_url=f"  {url} ")
    assert settings.database_url == url
    assert not settings.uses_embedded_database


def test_unknown_channel_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(region_channels={"A": "email", "C": "fax"})
    message = _message(caught)
    assert "'fax'" in message
    assert "'C'" in message


def test_capture_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="RXROUTE_ERX_CAPTURE"):
        _settings(environment="production", erx_capture=True, **REAL_SECRETS)
    assert _settings(erx_capture=True).erx_capture is True


def test_env_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RXROUTE_PORT", "9123")
    monkeypatch.setenv("RXROUTE_DATABASE_URL", "postgresql://u@127.0.0.1:5432/elsewhere")
    monkeypatch.setenv("RXROUTE_REGION_CHANNELS", '{"a": "email", "c": "erx"}')
    monkeypatch.setenv("RXROUTE_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("PORT", "1")  # unprefixed: ignored
    settings = get_settings()
    assert settings.port == 9123
    assert settings.database_url == "postgresql://u@127.0.0.1:5432/elsewhere"
    assert settings.region_channels == {"A": "email", "C": "erx"}
    assert settings.channel_for_region("c") == "erx"
    assert settings.pg_data_dir == tmp_path / "pg"
    assert get_settings() is settings


def test_env_prefix_errors_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXROUTE_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="RXROUTE_ENCRYPTION_KEYS"):
        get_settings()


def test_secrets_hidden_from_repr() -> None:
    settings = _settings(**REAL_SECRETS)
    text = repr(settings)
    for secret in REAL_SECRETS.values():
        assert secret not in text


def test_display_timezone_defaults_to_london_and_follows_the_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _settings().display_zone.key == "Europe/London"
    monkeypatch.setenv("RXROUTE_DISPLAY_TIMEZONE", " America/New_York ")
    settings = get_settings()
    assert settings.display_timezone == "America/New_York"
    assert settings.display_zone.key == "America/New_York"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "BST", "europe/london", ""])
def test_unknown_display_timezone_refused(zone: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(display_timezone=zone)
    assert caught.value.errors()[0]["loc"] == ("display_timezone",)
    assert "IANA time zone" in _message(caught)


def test_unknown_display_timezone_is_one_cli_line_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env.update(
        COLUMNS="80",  # a long message must still be one line
        RXROUTE_DISPLAY_TIMEZONE="Mars/Olympus_Mons",
        RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/never-reached",
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rxroute"), "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: RXROUTE_DISPLAY_TIMEZONE: 'Mars/Olympus_Mons' is not a")
    assert "Traceback" not in result.stderr + result.stdout


def test_stalled_job_defaults_recover_a_killed_worker_within_a_minute() -> None:
    settings = _settings()
    assert settings.stalled_job_seconds == 30
    assert settings.worker_heartbeat_seconds == 5
    assert settings.platform_call_deadline_seconds == 20


def test_stalled_interval_must_span_three_heartbeats() -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(
            stalled_job_seconds=12, worker_heartbeat_seconds=5, platform_call_deadline_seconds=5
        )
    message = _message(caught)
    assert "RXROUTE_STALLED_JOB_SECONDS (12)" in message
    assert "RXROUTE_WORKER_HEARTBEAT_SECONDS (5)" in message
    accepted = _settings(
        stalled_job_seconds=15, worker_heartbeat_seconds=5, platform_call_deadline_seconds=5
    )
    assert accepted.stalled_job_seconds == 15


@pytest.mark.parametrize(("stalled", "deadline"), [(30, 25.5), (30, 30), (20, 40)])
def test_platform_deadline_must_end_well_before_a_job_counts_as_stalled(
    stalled: int, deadline: float
) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(stalled_job_seconds=stalled, platform_call_deadline_seconds=deadline)
    message = _message(caught)
    assert f"RXROUTE_PLATFORM_CALL_DEADLINE_SECONDS ({deadline:g})" in message
    assert f"RXROUTE_STALLED_JOB_SECONDS ({stalled})" in message
    assert "5 s below" in message


def test_platform_deadline_five_seconds_below_stalled_is_accepted() -> None:
    settings = _settings(stalled_job_seconds=60, platform_call_deadline_seconds=55)
    assert settings.platform_call_deadline_seconds == 55


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stalled_job_seconds", 5),
        ("worker_heartbeat_seconds", 0),
        ("platform_call_deadline_seconds", 0),
    ],
)
def test_worker_timings_out_of_range_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(**{field: value})
    assert caught.value.errors()[0]["loc"] == (field,)


def test_worker_timings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXROUTE_STALLED_JOB_SECONDS", "12")
    monkeypatch.setenv("RXROUTE_WORKER_HEARTBEAT_SECONDS", "2.5")
    monkeypatch.setenv("RXROUTE_PLATFORM_CALL_DEADLINE_SECONDS", "7")
    settings = get_settings()
    assert (settings.stalled_job_seconds, settings.worker_heartbeat_seconds) == (12, 2.5)
    assert settings.platform_call_deadline_seconds == 7
