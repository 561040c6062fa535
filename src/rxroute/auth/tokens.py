"""Signed bearer tokens naming a server-side session.

The token (itsdangerous, keyed by the session key ring, see :mod:`rxroute.auth.keys`) carries
only the id of a row in ``auth_sessions`` and its issue time. The signature and age are
checked first, so garbage and stale tokens cost no database work; the row then says whether
the session is still live (see :mod:`rxroute.auth.sessions`), which is what makes signing out
take effect at once. The same token is the API's bearer token and the pages' cookie.
"""

from __future__ import annotations

import uuid

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from rxroute.auth.keys import KeyRing

_SALT = "rxroute-session-token"


class InvalidToken(ValueError):
    """The token cannot be honoured; the message says why, for the caller to show."""


def _serializer(keys: KeyRing) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keys.oldest_first, salt=_SALT)


def issue_token(keys: KeyRing, session_id: uuid.UUID) -> str:
    return _serializer(keys).dumps({"sid": str(session_id)})


def read_token(keys: KeyRing, token: str, max_age_seconds: int) -> uuid.UUID:
    """The session id the token names, if it is signed by one of ``keys`` and young enough."""
    try:
        data = _serializer(keys).loads(token, max_age=max_age_seconds)
    except SignatureExpired as exc:
        raise InvalidToken("token expired; sign in again") from exc
    except BadSignature as exc:
        raise InvalidToken("token is not valid") from exc
    try:
        return uuid.UUID(data["sid"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # Includes tokens from before server-side sessions (no "sid"): not revocable, refused.
        raise InvalidToken("token is not valid; sign in again") from exc
