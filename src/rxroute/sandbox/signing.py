"""Webhook signatures, written independently of rxroute's verifier on purpose.

If both sides shared one helper, a mistake in it would sign and verify consistently and the
tests would never notice that the documented scheme was not the one implemented.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``"{timestamp}.{raw body}"`` keyed by the secret."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
