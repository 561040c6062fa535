"""Settings: RXROUTE_ environment variables, and unsafe values refused at start-up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from rxroute.config import Environment, Settings, get_settings
from rxroute.config_secrets import DEMO_WEBHOOK_SECRET, OPTIONAL_SECRETS, PUBLISHED_DEMO_SECRETS

ROOT = Path(__file__).resolve().parent.parent

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
    others = {f"RXROUTE_{name.upper()}" for name in Settings.secret_settings()} - {variable}
    assert not any(re.search(rf"{other}\b", message) for other in others)


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


# --- every secret setting, including ones added later -------------------------------------


def _secret_fields_by_type() -> set[str]:
    """Secret settings found independently of the validator: by the field's declared type."""
    return {
        name
        for name, field in Settings.model_fields.items()
        if "SecretStr" in repr(field.annotation)
    }


#: Settings whose names look secret but are not secrets (paths, durations).
NOT_SECRETS = {"erx_token_path", "access_token_ttl_seconds", "erx_token_refresh_margin_seconds"}
SECRET_LOOKING = re.compile(r"secret|password|passphrase|credential|token|(^|_)keys?(_|$)")


def _published_values() -> set[str]:
    """Every secret value rxroute publishes: its demo constants, the README's account table,
    and the secret defaults ``.env.example`` shows."""
    values = set(PUBLISHED_DEMO_SECRETS) | {"change-me", "CHANGEME-in-production"}
    readme = (ROOT / "README.md").read_text()
    for line in readme.splitlines():
        if line.startswith(("| OAuth client |", "| webhook secret |")):
            values.add(re.findall(r"`([^`]+)`", line)[-1])
    env_example = (ROOT / ".env.example").read_text()
    for name in _secret_fields_by_type():
        found = re.search(rf"^# RXROUTE_{name.upper()}=(.+)$", env_example, re.MULTILINE)
        if found:
            values.add(found.group(1).strip())
    return values


def test_published_values_were_found() -> None:
    values = _published_values()
    assert "demo-only-sandbox-client-secret" in values  # the README's table
    assert DEMO_WEBHOOK_SECRET in values


def test_the_validator_checks_every_secretstr_field() -> None:
    """A new ``SecretStr`` setting is checked without anyone listing it anywhere."""
    assert set(Settings.secret_settings()) == _secret_fields_by_type()
    assert {
        "encryption_keys",
        "session_secret",
        "webhook_secret",
        "webhook_secret_previous",
        "erx_client_secret",
        "smtp_password",
    } <= set(Settings.secret_settings())
    assert set(OPTIONAL_SECRETS) <= set(Settings.secret_settings()), "stale optional name"


def test_settings_that_look_secret_are_secretstr() -> None:
    """A secret declared as a plain ``str`` would escape the check (and show in reprs)."""
    secret_typed = _secret_fields_by_type()
    looking = {name for name in Settings.model_fields if SECRET_LOOKING.search(name)}
    assert looking - NOT_SECRETS - secret_typed == set()
    assert set(Settings.model_fields) >= NOT_SECRETS, "stale NOT_SECRETS name"


#: Settings that turn on the feature a secret is needed for (SECRETS_NEEDED_ONLY_WITH).
ENABLING = {"events_secret": {"events_url": "https://platform.example.com/events"}}


@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize("field", sorted(_secret_fields_by_type()))
@pytest.mark.parametrize("value", sorted(_published_values()))
def test_every_secret_refuses_every_published_value(
    environment: str, field: str, value: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(
            environment=environment, **{**REAL_SECRETS, **ENABLING.get(field, {}), field: value}
        )
    message = _message(caught)
    variable = f"RXROUTE_{field.upper()}"
    assert f"{variable} still holds a placeholder or published demo value" in message
    others = {f"RXROUTE_{name.upper()}" for name in Settings.secret_settings()} - {variable}
    assert not any(re.search(rf"{other}\b", message) for other in others)
    for secret in (value, *REAL_SECRETS.values()):
        assert secret not in message, "the refusal must not echo a secret"


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_previous_webhook_secret_set_to_the_readme_demo_value_is_refused(
    environment: str,
) -> None:
    """The issue's case: production started with the published previous secret."""
    with pytest.raises(ValidationError) as caught:
        _settings(
            environment=environment,
            **REAL_SECRETS,
            webhook_secret_previous=DEMO_WEBHOOK_SECRET,
        )
    assert "RXROUTE_WEBHOOK_SECRET_PREVIOUS still holds" in _message(caught)
    # A real previous secret (mid-rotation) is fine.
    rotating = _settings(
        environment=environment, **REAL_SECRETS, webhook_secret_previous="7e6d5c-old-secret"
    )
    assert rotating.webhook_secret_previous is not None


@pytest.mark.parametrize("field", sorted(_secret_fields_by_type() - OPTIONAL_SECRETS))
@pytest.mark.parametrize("value", ["", "   "])
def test_every_required_secret_refuses_empty(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(
            environment="production", **{**REAL_SECRETS, **ENABLING.get(field, {}), field: value}
        )
    assert f"RXROUTE_{field.upper()} is empty" in _message(caught)


@pytest.mark.parametrize("field", sorted(OPTIONAL_SECRETS))
def test_optional_secrets_may_be_unset(field: str) -> None:
    settings = _settings(environment="production", **REAL_SECRETS)
    value = getattr(settings, field)
    # Unset by default: None, an empty secret, or (the previous-keys lists) no keys at all.
    assert value in (None, "", []) or not value.get_secret_value()
    _settings(environment="production", **{**REAL_SECRETS, field: ""})


def test_a_published_key_hidden_in_a_key_list_is_refused() -> None:
    keys = REAL_SECRETS["encryption_keys"] + ",demo-only-encryption-key-000000000000000000="
    with pytest.raises(ValidationError, match="RXROUTE_ENCRYPTION_KEYS still holds"):
        _settings(environment="production", **{**REAL_SECRETS, "encryption_keys": keys})


def test_all_bad_secrets_are_named_in_one_message() -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(
            environment="production",
            **{**REAL_SECRETS, "session_secret": "", "smtp_password": "change-me"},
            webhook_secret_previous=DEMO_WEBHOOK_SECRET,
        )
    message = caught.value.errors()[0]["msg"]
    assert "\n" not in message
    for expected in (
        "RXROUTE_SESSION_SECRET is empty",
        "RXROUTE_WEBHOOK_SECRET_PREVIOUS still holds",
        "RXROUTE_SMTP_PASSWORD still holds",
    ):
        assert expected in message


def test_a_secret_setting_added_later_is_checked_without_listing_it() -> None:
    """What a future ``SecretStr`` field gets: required, and refused when demo or empty."""

    class Extended(Settings):
        audit_signing_key: SecretStr = SecretStr("demo-only-audit-key")
        link_keys_previous: list[SecretStr] = []

    with pytest.raises(ValidationError, match="RXROUTE_AUDIT_SIGNING_KEY still holds"):
        Extended(environment="production", **REAL_SECRETS, _env_file=None)  # type: ignore[call-arg]
    real = {**REAL_SECRETS, "audit_signing_key": "5b4a39-real-audit-key"}
    with pytest.raises(ValidationError, match="RXROUTE_LINK_KEYS_PREVIOUS is empty"):
        Extended(environment="production", **real, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="RXROUTE_LINK_KEYS_PREVIOUS still holds"):
        Extended(
            environment="production",
            **real,
            link_keys_previous=["a1b2c3-real", "change-me"],
            _env_file=None,  # type: ignore[call-arg]
        )
    accepted = Extended(
        environment="production",
        **real,
        link_keys_previous=["a1b2c3-real"],
        _env_file=None,  # type: ignore[call-arg]
    )
    assert accepted.environment is Environment.PRODUCTION


def test_demo_previous_webhook_secret_is_one_cli_line_naming_the_variable(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env.update({f"RXROUTE_{name.upper()}": value for name, value in REAL_SECRETS.items()})
    env.update(
        COLUMNS="80",
        RXROUTE_ENVIRONMENT="production",
        RXROUTE_WEBHOOK_SECRET_PREVIOUS=DEMO_WEBHOOK_SECRET,
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
    assert lines[0].startswith("error: RXROUTE_WEBHOOK_SECRET_PREVIOUS still holds a placeholder")
    assert DEMO_WEBHOOK_SECRET not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
