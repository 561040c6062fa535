"""The events settings: a real whsec_ secret, and no demo secret outside development."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from rxroute.config import Settings
from rxroute.config_secrets import DEMO_EVENTS_SECRET
from rxroute.events.secrets import InvalidSecret, new_secret, secret_bytes

REAL = {
    "encryption_keys": "n3bE0eS8y7bYQK1dJ4yLrj1qz2e9v0oT3m5pX6wZ8aA=",
    "session_secret": "a-real-session-secret-4b1f0c",
    "csrf_secret": "a-real-csrf-secret-5c2a91",
    "link_secret": "a-real-link-secret-8d3e02",
    "webhook_secret": "a-real-webhook-secret-9e2d7a",
    "erx_client_secret": "a-real-client-secret-77c3d1",
}


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_development_accepts_the_demo_secret() -> None:
    settings = _settings(events_url="http://127.0.0.1:8027/events")
    assert settings.events_secret.get_secret_value() == DEMO_EVENTS_SECRET
    assert len(secret_bytes(DEMO_EVENTS_SECRET)) >= 24


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_staging_and_production_refuse_the_demo_secret(environment: str) -> None:
    with pytest.raises(ValidationError, match="RXROUTE_EVENTS_SECRET still holds"):
        _settings(environment=environment, events_url="https://platform.example.com/e", **REAL)


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_a_placeholder_secret_is_refused_even_when_encoded(environment: str) -> None:
    encoded = "whsec_" + base64.b64encode(b"change-me-change-me-change-me!!").decode()
    with pytest.raises(ValidationError, match="placeholder"):
        _settings(
            environment=environment,
            events_url="https://platform.example.com/e",
            events_secret=encoded,
            **REAL,
        )


def test_staging_refuses_an_empty_secret_and_plain_http() -> None:
    with pytest.raises(ValidationError, match="RXROUTE_EVENTS_SECRET is empty"):
        _settings(
            environment="staging",
            events_url="https://platform.example.com/e",
            events_secret="",
            **REAL,
        )
    with pytest.raises(ValidationError, match="must be an https:// URL"):
        _settings(
            environment="staging",
            events_url="http://platform.example.com/e",
            events_secret=new_secret(),
            **REAL,
        )


def test_staging_accepts_a_real_secret_and_needs_none_without_a_url() -> None:
    ok = _settings(
        environment="staging",
        events_url="https://platform.example.com/e",
        events_secret=new_secret(),
        **REAL,
    )
    assert ok.events_url == "https://platform.example.com/e"
    assert _settings(environment="staging", **REAL).events_url == ""


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("not-a-whsec", "must start with 'whsec_'"),
        ("whsec_***", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ],
)
def test_a_malformed_secret_is_refused_in_any_environment(secret: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(events_url="http://127.0.0.1:8027/events", events_secret=secret)
    with pytest.raises(InvalidSecret):
        secret_bytes(secret)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/e", "example.com/e", "https://user:pw@example.com/e"]
)
def test_a_bad_events_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="events_url"):
        _settings(events_url=url)
