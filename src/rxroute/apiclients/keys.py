"""API keys: how they look, and the one way they are hashed.

A key is ``rxr_`` followed by 32 random bytes (base64url). The prefix lets secret scanners
and people recognise it and lets a request tell a key from a session token at a glance.
Only its SHA-256 is stored: with 256 bits of entropy there is nothing to brute-force, so
password-style stretching would only slow every API call.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "rxr_"
#: How much of a key lists show (``rxr_`` and 8 characters): enough to tell keys apart.
SHOWN_CHARACTERS = len(KEY_PREFIX) + 8


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: ``plain`` is shown once and never stored."""

    plain: str
    prefix: str
    digest: str


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def key_digest(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def new_key() -> NewKey:
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(plain=plain, prefix=plain[:SHOWN_CHARACTERS], digest=key_digest(plain))
