"""CSRF tokens: HMACs under the CSRF key ring, needing no server-side storage.

* Signed in: the token is an HMAC of the session token, so it changes with every sign-in
  and another site cannot compute it. Unsafe cookie-authenticated API calls send it in
  ``X-CSRF-Token``; forms send it as the ``csrf_token`` field.
* The sign-in form (no session yet): a signed double-submit cookie. ``GET /login`` sets a
  random nonce in a cookie and puts an HMAC of it in the form; ``POST /login`` needs both
  to match, which a cross-site form cannot arrange (it can neither read our cookie nor
  compute the HMAC), so another site cannot sign a browser in to an account of its choosing.

Tokens are made with the current ``RXROUTE_CSRF_SECRET`` and accepted under any of its
previous keys too, so rotating it does not break forms already on screen.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from rxroute.auth.keys import csrf_keys
from rxroute.config import Settings

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The sign-in form's double-submit cookie.
SIGN_IN_COOKIE = "rxroute_signin"


def _mac(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()[:40]


def _ok(settings: Settings, message: str, submitted: str | None) -> bool:
    if not submitted:
        return False
    # Every key is tried (no early exit), so the time taken does not depend on which matched.
    matches = [
        hmac.compare_digest(_mac(key, message), submitted) for key in csrf_keys(settings).verifying
    ]
    return any(matches)


def csrf_token(settings: Settings, session_token: str) -> str:
    return _mac(csrf_keys(settings).current, "csrf:" + session_token)


def csrf_ok(settings: Settings, session_token: str | None, submitted: str | None) -> bool:
    if not session_token:
        return False
    return _ok(settings, "csrf:" + session_token, submitted)


def new_sign_in_nonce() -> str:
    return secrets.token_urlsafe(24)


def sign_in_csrf_token(settings: Settings, nonce: str) -> str:
    return _mac(csrf_keys(settings).current, "sign-in:" + nonce)


def sign_in_csrf_ok(settings: Settings, nonce: str | None, submitted: str | None) -> bool:
    if not nonce:
        return False
    return _ok(settings, "sign-in:" + nonce, submitted)
