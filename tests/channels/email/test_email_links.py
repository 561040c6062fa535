from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from rxroute.channels.email.links import (
    DISPENSE_LINK_SALT,
    DispenseLink,
    LinkExpired,
    LinkInvalid,
    make_dispense_token,
    read_dispense_token,
)

SECRET = "test-session-secret"
LINK = DispenseLink(
    prescription_id="1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
    delivery_id="6ec0bd7f-11c0-43da-975e-2a8ad9ebae0b",
    nonce="n0nce-abc",
)


def test_round_trip() -> None:
    token = make_dispense_token(SECRET, LINK)
    assert read_dispense_token(SECRET, token, max_age_seconds=3600) == LINK


def test_each_delivery_gets_its_own_token() -> None:
    """The token binds prescription, delivery and nonce: changing any one changes it."""
    tokens = {
        make_dispense_token(SECRET, link)
        for link in (
            LINK,
            DispenseLink(LINK.prescription_id, "a-later-delivery", LINK.nonce),
            DispenseLink(LINK.prescription_id, LINK.delivery_id, "another-nonce"),
            DispenseLink("another-prescription", LINK.delivery_id, LINK.nonce),
        )
    }
    assert len(tokens) == 4


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
    token = make_dispense_token(SECRET, LINK)
    assert callable(mangle)
    with pytest.raises(LinkInvalid):
        read_dispense_token(SECRET, mangle(token), max_age_seconds=3600)


def test_other_secret_or_salt_is_invalid() -> None:
    token = make_dispense_token(SECRET, LINK)
    with pytest.raises(LinkInvalid):
        read_dispense_token("another-secret", token, max_age_seconds=3600)
    payload = {"rx": LINK.prescription_id, "d": LINK.delivery_id, "n": LINK.nonce}
    other_purpose = URLSafeTimedSerializer(SECRET, salt="login").dumps(payload)
    with pytest.raises(LinkInvalid):
        read_dispense_token(SECRET, other_purpose, max_age_seconds=3600)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(["RX-1"], id="list"),
        # A link minted before deliveries existed: genuine, but bound to no delivery.
        pytest.param({"rx": "RX-1"}, id="unbound-legacy"),
        pytest.param({"rx": "RX-1", "d": "D-1"}, id="no-nonce"),
        pytest.param({"rx": "RX-1", "d": "", "n": "n"}, id="empty-delivery"),
        pytest.param({"rx": "RX-1", "d": 7, "n": "n"}, id="delivery-not-a-string"),
    ],
)
def test_signed_payload_of_the_wrong_shape_is_invalid(payload: object) -> None:
    token = URLSafeTimedSerializer(SECRET, salt=DISPENSE_LINK_SALT).dumps(payload)
    with pytest.raises(LinkInvalid):
        read_dispense_token(SECRET, token, max_age_seconds=3600)


def test_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    issued_at = time.time() - 2 * 3600
    monkeypatch.setattr(time, "time", lambda: issued_at)
    token = make_dispense_token(SECRET, LINK)
    monkeypatch.undo()
    with pytest.raises(LinkExpired):
        read_dispense_token(SECRET, token, max_age_seconds=3600)
    # Still valid under a longer TTL: expiry is the only thing wrong with it.
    assert read_dispense_token(SECRET, token, max_age_seconds=3 * 3600) == LINK


def test_error_messages_do_not_echo_the_token() -> None:
    token = make_dispense_token(SECRET, LINK)
    with pytest.raises(LinkInvalid) as caught:
        read_dispense_token("wrong", token, max_age_seconds=60)
    assert token not in str(caught.value)
    assert LINK.prescription_id not in str(caught.value)
    assert LINK.nonce not in str(caught.value)


def test_refuses_empty_secret_and_negative_age() -> None:
    with pytest.raises(ValueError):
        make_dispense_token("", LINK)
    with pytest.raises(ValueError):
        read_dispense_token(SECRET, make_dispense_token(SECRET, LINK), max_age_seconds=-1)


@pytest.mark.parametrize(
    "link",
    [
        DispenseLink("", LINK.delivery_id, LINK.nonce),
        DispenseLink(LINK.prescription_id, "", LINK.nonce),
        DispenseLink(LINK.prescription_id, LINK.delivery_id, ""),
    ],
)
def test_refuses_to_mint_an_unbound_link(link: DispenseLink) -> None:
    with pytest.raises(ValueError, match="prescription, the delivery and a nonce"):
        make_dispense_token(SECRET, link)
