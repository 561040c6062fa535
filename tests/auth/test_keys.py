"""One signing key per purpose (sessions, CSRF, pharmacy links), each rotatable without
downtime: new tokens are signed with the current key, tokens signed with a previous key
still verify, and anything else is refused. Staging and production refuse demo, empty or
shared keys."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.auth.csrf import csrf_ok, csrf_token
from rxroute.auth.keys import KeyRing, csrf_keys, link_keys, session_keys
from rxroute.auth.tokens import issue_token, read_token
from rxroute.channels.email.channel import confirm_url
from rxroute.channels.email.links import (
    DispenseLink,
    LinkInvalid,
    make_dispense_token,
    read_dispense_token,
)
from rxroute.config import Settings, get_settings
from rxroute.models import Role
from rxroute.runtime import Runtime
from tests.auth.helpers import session_token
from tests.factories import make_user
from tests.web.test_pharmacy_confirm import _emailed, _token

OLD = "an-old-session-key-2f6b1c"
NEW = "a-new-session-key-93d0aa"


def _rotate(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, purpose: str, current: str, *old: str
) -> None:
    monkeypatch.setattr(settings, f"{purpose}_secret", SecretStr(current))
    monkeypatch.setattr(settings, f"{purpose}_secret_previous", [SecretStr(k) for k in old])


async def test_a_session_token_signed_with_the_previous_key_still_works(
    client: httpx.AsyncClient,
    session: AsyncSession,
    db: Runtime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await make_user(session, Role.SUPPORT)
    await session.commit()
    _rotate(monkeypatch, settings, "session", OLD)
    before = await session_token(db, user.id)

    _rotate(monkeypatch, settings, "session", NEW, OLD)
    answer = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {before}"})
    assert answer.status_code == 200
    # New tokens are signed with the new key alone.
    after = await session_token(db, user.id)
    read_token(KeyRing(NEW), after, 60)
    with pytest.raises(ValueError, match="not valid"):
        read_token(KeyRing(OLD), after, 60)

    # Once the old key is dropped, what it signed stops working.
    _rotate(monkeypatch, settings, "session", NEW)
    dropped = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {before}"})
    assert dropped.status_code == 401
    assert (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {after}"})
    ).status_code == 200


async def test_a_token_signed_with_an_unknown_key_is_refused(
    client: httpx.AsyncClient,
    session: AsyncSession,
    db: Runtime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = await make_user(session, Role.SUPPORT)
    await session.commit()
    _rotate(monkeypatch, settings, "session", NEW, OLD)
    genuine = await session_token(db, user.id)
    session_id = read_token(session_keys(settings), genuine, 60)
    forged = issue_token(KeyRing("a-key-nobody-configured"), session_id)
    answer = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401
    assert answer.json() == {"detail": "token is not valid"}
    # Another purpose's key does not sign sessions either.
    other_purpose = issue_token(link_keys(settings), session_id)
    answer = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {other_purpose}"}
    )
    assert answer.status_code == 401


def test_csrf_tokens_have_their_own_rotatable_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rotate(monkeypatch, settings, "csrf", "csrf-key-one")
    on_screen = csrf_token(settings, "a-session-token")
    _rotate(monkeypatch, settings, "csrf", "csrf-key-two", "csrf-key-one")
    assert csrf_ok(settings, "a-session-token", on_screen)
    assert csrf_token(settings, "a-session-token") != on_screen
    _rotate(monkeypatch, settings, "csrf", "csrf-key-two")
    assert not csrf_ok(settings, "a-session-token", on_screen)
    # The session key plays no part in CSRF tokens.
    before = csrf_token(settings, "a-session-token")
    _rotate(monkeypatch, settings, "session", "yet-another-session-key")
    assert csrf_token(settings, "a-session-token") == before
    assert csrf_keys(settings).current == "csrf-key-two"


def test_pharmacy_links_verify_under_previous_link_keys_only() -> None:
    link = DispenseLink(str(uuid.uuid4()), str(uuid.uuid4()), "nonce-1")
    old = make_dispense_token("old-link-key", link)
    ring = KeyRing("new-link-key", ("old-link-key",))
    assert read_dispense_token(ring.verifying, old, 3600) == link
    assert read_dispense_token(ring.verifying, make_dispense_token("new-link-key", link), 60)
    with pytest.raises(LinkInvalid):
        read_dispense_token(("new-link-key",), old, 3600)
    with pytest.raises(LinkInvalid):
        read_dispense_token(ring.verifying, make_dispense_token("unknown-key", link), 3600)


async def test_an_emailed_link_signed_with_the_previous_link_key_still_confirms(
    client: httpx.AsyncClient,
    session: AsyncSession,
    db: Runtime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prescription = await _emailed(session, db)
    _rotate(monkeypatch, settings, "link", "link-key-2025")
    emailed_before = await _token(session, settings, prescription)
    # The emailed URL is signed with the link key, not the session key.
    link = read_dispense_token(link_keys(settings).verifying, emailed_before, 60)
    assert confirm_url(settings, link).rsplit("/", 1)[1] == emailed_before

    _rotate(monkeypatch, settings, "link", "link-key-2026", "link-key-2025")
    page = await client.get(f"/pharmacy/confirm/{emailed_before}")
    assert page.status_code == 200, page.text
    assert "Confirm dispensed</button>" in page.text

    _rotate(monkeypatch, settings, "link", "link-key-2026")
    gone = await client.get(f"/pharmacy/confirm/{emailed_before}")
    assert gone.status_code == 400
    assert "Confirm dispensed</button>" not in gone.text


# --- settings -----------------------------------------------------------------------------

REAL: dict[str, str] = {
    "encryption_keys": "kWm0bnM6S0v7hI1b0oS5zYdCq8m0x3yQ2tQh8a4JfVg=",
    "session_secret": "b3f1c2a9e8d7-real-session-secret",
    "csrf_secret": "5d4c3b2a1f0e-real-csrf-secret",
    "link_secret": "e0f1a2b3c4d5-real-link-secret",
    "webhook_secret": "9a8b7c6d5e4f-real-webhook-secret",
    "erx_client_secret": "0f1e2d3c4b5a-real-client-secret",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("RXROUTE_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize(
    ("field", "value", "variable", "why"),
    [
        ("csrf_secret", "demo-only-csrf-secret", "RXROUTE_CSRF_SECRET", "placeholder"),
        ("csrf_secret", " ", "RXROUTE_CSRF_SECRET", "empty"),
        ("link_secret", "demo-only-pharmacy-link-secret", "RXROUTE_LINK_SECRET", "placeholder"),
        ("link_secret", "", "RXROUTE_LINK_SECRET", "empty"),
        (
            "session_secret_previous",
            ["a-real-old-key", "demo-only-session-secret"],
            "RXROUTE_SESSION_SECRET_PREVIOUS",
            "placeholder",
        ),
        ("csrf_secret_previous", [""], "RXROUTE_CSRF_SECRET_PREVIOUS", "empty"),
        ("link_secret_previous", ["change-me"], "RXROUTE_LINK_SECRET_PREVIOUS", "placeholder"),
    ],
)
def test_demo_or_empty_keys_refused_outside_development(
    environment: str, field: str, value: Any, variable: str, why: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(environment=environment, **{**REAL, field: value})
    message = str(caught.value)
    assert variable in message and why in message


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("field", "value"),
    [("csrf_secret", ""), ("link_secret", "  "), ("session_secret_previous", ["ok-key", ""])],
)
def test_an_empty_signing_key_is_refused_even_in_development(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match="empty key"):
        _settings(**{field: value})


@pytest.mark.usefixtures("clean_env")
def test_one_key_for_two_purposes_is_refused_outside_development() -> None:
    shared = {**REAL, "link_secret": REAL["session_secret"]}
    with pytest.raises(ValidationError, match="RXROUTE_LINK_SECRET is the same as"):
        _settings(environment="production", **shared)
    assert _settings(**shared).link_secret.get_secret_value() == REAL["session_secret"]


@pytest.mark.usefixtures("clean_env")
def test_real_separate_keys_with_previous_lists_are_accepted() -> None:
    settings = _settings(
        environment="production",
        **REAL,
        session_secret_previous=["2c9e-old-session-key"],
        link_secret_previous=[REAL["session_secret"]],  # upgrading: links signed before
    )
    assert session_keys(settings).verifying == (REAL["session_secret"], "2c9e-old-session-key")
    assert link_keys(settings).verifying == (REAL["link_secret"], REAL["session_secret"])


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["k1", "k2"]', ["k1", "k2"]),
        ("just-one-old-key", ["just-one-old-key"]),
        ("", []),
        ("[]", []),
    ],
)
def test_previous_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("RXROUTE_SESSION_SECRET_PREVIOUS", raw)
    settings = _settings()
    assert [key.get_secret_value() for key in settings.session_secret_previous] == expected


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("raw", ['["unterminated"', "[1, 2]", '{"a": "b"}'])
def test_a_malformed_previous_list_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("RXROUTE_LINK_SECRET_PREVIOUS", raw)
    with pytest.raises(ValidationError) as caught:
        _settings()
    assert caught.value.errors()[0]["loc"] == ("link_secret_previous",)
    assert "JSON list of strings" in str(caught.value)
