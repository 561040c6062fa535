"""Webhook signatures: HMAC-SHA256 over ``"{timestamp}.{raw body}"``.

Pure functions, no I/O, so the receiving endpoint can verify before it touches the database
and tests can cover every edge. The timestamp is inside the signed string so a captured
request cannot be replayed with a fresh timestamp, and the tolerance window bounds how long
a captured request stays usable at all. Several secrets are accepted so a secret can be
rotated without downtime (current + previous).

The signature is accepted only as the platform computes it: 64 lower-case hex digits. Each
header must come once: a second copy (added by a proxy, or by someone probing which copy
wins) is refused rather than resolved, so no two parts of the stack can disagree about
which signature was checked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence

#: Header names live in the contract module; re-exported so the endpoint imports one place.
from rxroute.channels.erx.contract import HEADER_SIGNATURE, HEADER_SIGNATURE_TIMESTAMP

__all__ = [
    "HEADER_SIGNATURE",
    "HEADER_SIGNATURE_TIMESTAMP",
    "DuplicateSignatureHeader",
    "MalformedSignatureHeader",
    "MissingSignatureHeader",
    "SignatureConfigError",
    "SignatureError",
    "SignatureMismatch",
    "StaleTimestamp",
    "sign",
    "single_header",
    "verify",
]

#: Lower case only: the platform sends ``hexdigest()``; anything else is not its signature.
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
#: HTTP's optional whitespace around a field value (RFC 9110, 5.5), not part of the value.
_OWS = " \t"


class SignatureError(Exception):
    """The request is not provably from the platform: answer 401, do not process it."""


class MissingSignatureHeader(SignatureError):
    pass


class MalformedSignatureHeader(SignatureError):
    pass


class DuplicateSignatureHeader(MalformedSignatureHeader):
    """A signature header came more than once."""


class StaleTimestamp(SignatureError):
    pass


class SignatureMismatch(SignatureError):
    pass


class SignatureConfigError(ValueError):
    """Our configuration cannot verify anything (no secret): a server error, not a bad request."""


def _signed_bytes(timestamp: int, body: bytes) -> bytes:
    return f"{timestamp}.".encode("ascii") + body


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``b"{timestamp}." + body`` keyed by ``secret``."""
    if not secret:
        raise SignatureConfigError("cannot sign with an empty secret")
    return hmac.new(
        secret.encode("utf-8"), _signed_bytes(timestamp, body), hashlib.sha256
    ).hexdigest()


def single_header(values: Sequence[str], name: str) -> str | None:
    """The one value of header ``name`` (None if absent); refuse it when sent more than once."""
    if len(values) > 1:
        raise DuplicateSignatureHeader(f"{name} was sent {len(values)} times; send it once")
    return values[0] if values else None


def verify(
    body: bytes,
    signature_header: str | None,
    timestamp_header: str | None,
    secrets: Sequence[str],
    now: Callable[[], float] | float,
    tolerance_seconds: int = 300,
) -> None:
    """Return if ``body`` was signed by one of ``secrets`` within the tolerance; raise if not.

    Checks run cheapest first (headers, then the clock, then HMAC); every comparison of a
    signature uses :func:`hmac.compare_digest`, and every secret is tried even after a
    match so the time taken does not say which secret matched.
    """
    usable = [s for s in secrets if s]
    if not usable:
        raise SignatureConfigError("no webhook secret configured: refusing to verify")
    if tolerance_seconds < 0:
        raise SignatureConfigError("tolerance_seconds must not be negative")
    signature = (signature_header or "").strip(_OWS)
    stamp_text = (timestamp_header or "").strip(_OWS)
    if not signature:
        raise MissingSignatureHeader(f"missing {HEADER_SIGNATURE} header")
    if not stamp_text:
        raise MissingSignatureHeader(f"missing {HEADER_SIGNATURE_TIMESTAMP} header")
    if not _HEX_SHA256.fullmatch(signature):
        raise MalformedSignatureHeader(
            f"{HEADER_SIGNATURE} is not a SHA-256 digest in lower-case hex (64 characters 0-9a-f)"
        )
    if not _UNIX_SECONDS.fullmatch(stamp_text):
        raise MalformedSignatureHeader(f"{HEADER_SIGNATURE_TIMESTAMP} is not unix seconds")
    timestamp = int(stamp_text)
    current = now() if callable(now) else now
    if abs(current - timestamp) > tolerance_seconds:
        raise StaleTimestamp(
            f"{HEADER_SIGNATURE_TIMESTAMP} is {int(current - timestamp)} s from now "
            f"(tolerance {tolerance_seconds} s)"
        )
    presented = signature.encode("ascii")
    matched = False
    for secret in usable:
        expected = sign(secret, timestamp, body).encode("ascii")
        matched |= hmac.compare_digest(expected, presented)
    if not matched:
        raise SignatureMismatch(f"{HEADER_SIGNATURE} does not match the body")
