"""Standard Webhooks secrets: ``whsec_`` followed by base64 of 24 to 64 random bytes.

Imported by :mod:`rxroute.config` (lazily, from a validator), so it imports nothing of
rxroute itself.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
#: How to make a secret, for error messages.
GENERATE_HINT = (
    'generate one with python -c "import base64, secrets; '
    "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
)
MAX_URL_LENGTH = 2000


class InvalidSecret(ValueError):
    """Not a usable ``whsec_`` secret; the message says what is wrong and how to fix it."""


class InvalidEndpointUrl(ValueError):
    """Not an http(s) URL events can be posted to."""


def secret_bytes(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret, or :class:`InvalidSecret`."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(f"must start with {SECRET_PREFIX!r}; {GENERATE_HINT}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret(
            f"is not valid base64 after {SECRET_PREFIX!r}; {GENERATE_HINT}"
        ) from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidSecret(
            f"must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (it encodes "
            f"{len(key)}); {GENERATE_HINT}"
        )
    return key


def new_secret() -> str:
    """A fresh secret for an endpoint added in admin (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_endpoint_url(url: str, *, require_https: bool = False) -> str:
    """The URL if events can be posted to it, else :class:`InvalidEndpointUrl`."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidEndpointUrl(f"must be at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    schemes = ("https",) if require_https else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        wanted = "an https:// URL" if require_https else "an http:// or https:// URL"
        raise InvalidEndpointUrl(
            f"must be {wanted} with a host, e.g. https://platform.example.com/rxroute/events"
        )
    if parts.username or parts.password:
        raise InvalidEndpointUrl(
            "must not carry a user name or password; events are signed instead"
        )
    if parts.fragment:
        raise InvalidEndpointUrl("must not have a #fragment")
    return url
