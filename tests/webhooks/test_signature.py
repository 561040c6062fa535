"""Webhook signature verification: pure, so every edge is tested without a server."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxroute.webhooks.signature import (
    HEADER_SIGNATURE,
    HEADER_SIGNATURE_TIMESTAMP,
    DuplicateSignatureHeader,
    MalformedSignatureHeader,
    MissingSignatureHeader,
    SignatureConfigError,
    SignatureError,
    SignatureMismatch,
    StaleTimestamp,
    sign,
    single_header,
    verify,
)

NOW = 1_700_000_000
BODY = b'{"id":"evt_1","event":"prescription.status_changed","data":{"status":"dispensed"}}'
SECRET = "whsec-current"
OLD = "whsec-previous"

secrets_st = st.text(min_size=1, max_size=64)
bodies = st.binary(max_size=2048)


def test_headers_are_the_contract_names() -> None:
    assert (HEADER_SIGNATURE, HEADER_SIGNATURE_TIMESTAMP) == (
        "X-Signature",
        "X-Signature-Timestamp",
    )


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected
    assert expected == expected.lower() and len(expected) == 64


def test_valid_signature_passes() -> None:
    verify(BODY, sign(SECRET, NOW, BODY), str(NOW), [SECRET], now=NOW)


def test_now_may_be_a_callable() -> None:
    verify(BODY, sign(SECRET, NOW, BODY), str(NOW), [SECRET], now=lambda: float(NOW + 10))


def test_surrounding_http_whitespace_is_not_part_of_the_value() -> None:
    verify(BODY, " " + sign(SECRET, NOW, BODY) + "\t", f" {NOW}\t", [SECRET], now=NOW)


@pytest.mark.parametrize(
    "recase",
    [
        str.upper,
        lambda hexed: hexed[:32].upper() + hexed[32:],
        lambda hexed: "".join(ch.upper() if i % 2 else ch for i, ch in enumerate(hexed)),
    ],
    ids=["upper", "half upper", "alternating"],
)
def test_only_lower_case_hex_is_the_platform_signature(recase: Callable[[str], str]) -> None:
    """The platform sends ``hexdigest()``: exactly that is accepted, nothing case-folded."""
    signature = sign(SECRET, NOW, BODY)
    assert any(ch in "abcdef" for ch in signature)
    with pytest.raises(MalformedSignatureHeader, match="lower-case hex"):
        verify(BODY, recase(signature), str(NOW), [SECRET], now=NOW)


@pytest.mark.parametrize("junk", ["\n", "\r\n", "\x00", "\u00a0"])
def test_other_characters_around_the_signature_are_refused(junk: str) -> None:
    with pytest.raises(MalformedSignatureHeader):
        verify(BODY, sign(SECRET, NOW, BODY) + junk, str(NOW), [SECRET], now=NOW)


def test_single_header() -> None:
    assert single_header([], HEADER_SIGNATURE) is None
    assert single_header(["abc"], HEADER_SIGNATURE) == "abc"
    for values in (["abc", "abc"], ["abc", "def"], ["", "abc"]):
        with pytest.raises(DuplicateSignatureHeader, match="X-Signature was sent 2 times"):
            single_header(values, HEADER_SIGNATURE)
    assert issubclass(DuplicateSignatureHeader, MalformedSignatureHeader)


def test_previous_secret_is_accepted_during_rotation() -> None:
    verify(BODY, sign(OLD, NOW, BODY), str(NOW), [SECRET, OLD], now=NOW)
    with pytest.raises(SignatureMismatch):
        verify(BODY, sign(OLD, NOW, BODY), str(NOW), [SECRET], now=NOW)


@pytest.mark.parametrize("secrets", [[], [""], ("", "")])
def test_no_usable_secret_is_a_configuration_error(secrets: list[str]) -> None:
    with pytest.raises(SignatureConfigError):
        verify(BODY, sign(SECRET, NOW, BODY), str(NOW), secrets, now=NOW)
    assert not issubclass(SignatureConfigError, SignatureError)


def test_empty_secret_cannot_sign() -> None:
    with pytest.raises(SignatureConfigError):
        sign("", NOW, BODY)


def test_negative_tolerance_is_a_configuration_error() -> None:
    with pytest.raises(SignatureConfigError):
        verify(BODY, sign(SECRET, NOW, BODY), str(NOW), [SECRET], now=NOW, tolerance_seconds=-1)


@pytest.mark.parametrize(
    ("signature", "timestamp"),
    [(None, str(NOW)), ("", str(NOW)), ("   ", str(NOW)), ("a" * 64, None), ("a" * 64, "")],
)
def test_missing_headers(signature: str | None, timestamp: str | None) -> None:
    with pytest.raises(MissingSignatureHeader):
        verify(BODY, signature, timestamp, [SECRET], now=NOW)


@pytest.mark.parametrize(
    ("signature", "timestamp"),
    [
        ("z" * 64, str(NOW)),
        ("a" * 63, str(NOW)),
        ("a" * 65, str(NOW)),
        ("sha256=" + "a" * 64, str(NOW)),
        ("a" * 64, "yesterday"),
        ("a" * 64, "1.5"),
        ("a" * 64, "-1700000000"),
        ("a" * 64, "1" * 13),
    ],
)
def test_malformed_headers(signature: str, timestamp: str) -> None:
    with pytest.raises(MalformedSignatureHeader):
        verify(BODY, signature, timestamp, [SECRET], now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
def test_stale_timestamps_in_either_direction(offset: int) -> None:
    stamp = NOW + offset
    with pytest.raises(StaleTimestamp):
        verify(BODY, sign(SECRET, stamp, BODY), str(stamp), [SECRET], now=NOW)


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_edges_of_the_tolerance_pass(offset: int) -> None:
    stamp = NOW + offset
    verify(BODY, sign(SECRET, stamp, BODY), str(stamp), [SECRET], now=NOW)


def test_replay_with_a_new_timestamp_fails() -> None:
    old_signature = sign(SECRET, NOW - 3600, BODY)
    with pytest.raises(SignatureMismatch):
        verify(BODY, old_signature, str(NOW), [SECRET], now=NOW)


def test_errors_are_all_signature_errors() -> None:
    for cls in (
        MissingSignatureHeader,
        MalformedSignatureHeader,
        StaleTimestamp,
        SignatureMismatch,
    ):
        assert issubclass(cls, SignatureError)


@given(body=bodies, secret=secrets_st, timestamp=st.integers(0, 10**11))
def test_round_trip(body: bytes, secret: str, timestamp: int) -> None:
    verify(body, sign(secret, timestamp, body), str(timestamp), [secret], now=timestamp)


@given(body=bodies.filter(bool), secret=secrets_st, data=st.data())
def test_any_single_byte_tamper_fails(body: bytes, secret: str, data: st.DataObject) -> None:
    signature = sign(secret, NOW, body)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(SignatureMismatch):
        verify(tampered, signature, str(NOW), [secret], now=NOW)


@given(body=bodies, secret=secrets_st, data=st.data())
def test_any_signature_tamper_fails(body: bytes, secret: str, data: st.DataObject) -> None:
    signature = sign(secret, NOW, body)
    index = data.draw(st.integers(0, 63))
    replacement = data.draw(
        st.sampled_from("0123456789abcdef").filter(lambda ch: ch != signature[index])
    )
    tampered = signature[:index] + replacement + signature[index + 1 :]
    with pytest.raises(SignatureMismatch):
        verify(body, tampered, str(NOW), [secret], now=NOW)


@given(body=bodies, secret=secrets_st, other=secrets_st)
def test_other_secret_fails(body: bytes, secret: str, other: str) -> None:
    if other == secret:
        return
    with pytest.raises(SignatureMismatch):
        verify(body, sign(other, NOW, body), str(NOW), [secret], now=NOW)


@given(
    body=bodies,
    tolerance=st.integers(0, 3600),
    distance=st.integers(1, 10**6),
    sign_of=st.sampled_from([-1, 1]),
)
def test_timestamps_outside_tolerance_fail(
    body: bytes, tolerance: int, distance: int, sign_of: int
) -> None:
    stamp = NOW + sign_of * (tolerance + distance)
    with pytest.raises(StaleTimestamp):
        verify(
            body,
            sign(SECRET, stamp, body),
            str(stamp),
            [SECRET],
            now=NOW,
            tolerance_seconds=tolerance,
        )


@given(body=bodies, tolerance=st.integers(0, 3600), data=st.data())
def test_timestamps_inside_tolerance_pass(body: bytes, tolerance: int, data: st.DataObject) -> None:
    stamp = NOW + data.draw(st.integers(-tolerance, tolerance))
    verify(
        body, sign(SECRET, stamp, body), str(stamp), [SECRET], now=NOW, tolerance_seconds=tolerance
    )
