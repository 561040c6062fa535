from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from rxroute.channels.email.links import (
    DISPENSE_LINK_SALT,
    LinkExpired,
    LinkInvalid,
    make_dispense_token,
    read_dispense_token,
)

SECRET = "test-session-secret"


def test_round_trip() -> None:
    token = make_dispense_token(SECRET, "RX-2026-000123")
    assert read_dispense_token(SECRET, token, max_age_seconds=3600) == "RX-2026-000123"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="signature"),
        pytest.param(lambda t: "x" + t, id="payload"),
        pytest.param(lambda t: t[: len(t) // 2], id="truncated"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "not a token at all", id="garbage"),
    ],
)
def test_tampered_token_is_invalid(mangle: object) -> None:
    token = make_dispense_token(SECRET, "RX-1")
    assert callable(mangle)
    with pytest.raises(LinkInvalid):
        read_dispense_token(SECRET, mangle(token), max_age_seconds=3600)


def test_other_secret_or_salt_is_invalid() -> None:
    token = make_dispense_token(SECRET, "RX-1")
    with pytest.raises(LinkInvalid):
        read_dispense_token("another-secret", token, max_age_seconds=3600)
    other_purpose = URLSafeTimedSerializer(SECRET, salt="login").dumps({"rx": "RX-1"})
    with pytest.raises(LinkInvalid):
        read_dispense_token(SECRET, other_purpose, max_age_seconds=3600)


def test_signed_payload_of_the_wrong_shape_is_invalid() -> None:
    token = URLSafeTimedSerializer(SECRET, salt=DISPENSE_LINK_SALT).dumps(["RX-1"])
    with pytest.raises(LinkInvalid):
        read_dispense_token(SECRET, token, max_age_seconds=3600)


def test_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    issued_at = time.time() - 2 * 3600
    monkeypatch.setattr(time, "time", lambda: issued_at)
    token = make_dispense_token(SECRET, "RX-1")
    monkeypatch.undo()
    with pytest.raises(LinkExpired):
        read_dispense_token(SECRET, token, max_age_seconds=3600)
    # Still valid under a longer TTL: expiry is the only thing wrong with it.
    assert read_dispense_token(SECRET, token, max_age_seconds=3 * 3600) == "RX-1"


def test_error_messages_do_not_echo_the_token() -> None:
    token = make_dispense_token(SECRET, "RX-1")
    with pytest.raises(LinkInvalid) as caught:
        read_dispense_token("wrong", token, max_age_seconds=60)
    assert token not in str(caught.value)
    assert "RX-1" not in str(caught.value)


def test_refuses_empty_secret_and_negative_age() -> None:
    with pytest.raises(ValueError):
        make_dispense_token("", "RX-1")
    with pytest.raises(ValueError):
        read_dispense_token(SECRET, make_dispense_token(SECRET, "RX-1"), max_age_seconds=-1)
