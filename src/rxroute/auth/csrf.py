"""CSRF tokens bound to the session token: an HMAC needing no server-side storage."""

from __future__ import annotations

import hashlib
import hmac

from rxroute.config import Settings

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(settings: Settings, session_token: str) -> str:
    key = settings.session_secret.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()[:40]


def csrf_ok(settings: Settings, session_token: str | None, submitted: str | None) -> bool:
    if not session_token or not submitted:
        return False
    return hmac.compare_digest(csrf_token(settings, session_token), submitted)
