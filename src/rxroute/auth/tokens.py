"""Short-lived signed bearer tokens for API clients.

Stateless (itsdangerous, keyed by ``RXROUTE_SESSION_SECRET``): the token carries the user id
and role and its issue time; the server checks the signature and age on each request, and
re-reads the user so a deactivated account stops working at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_SALT = "rxroute-api-token"


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    role: str


class InvalidToken(ValueError):
    pass


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_SALT)


def issue_token(secret: str, user_id: uuid.UUID, role: str) -> str:
    return _serializer(secret).dumps({"uid": str(user_id), "role": role})


def read_token(secret: str, token: str, max_age_seconds: int) -> TokenClaims:
    try:
        data = _serializer(secret).loads(token, max_age=max_age_seconds)
    except SignatureExpired as exc:
        raise InvalidToken("token expired; sign in again") from exc
    except BadSignature as exc:
        raise InvalidToken("token is not valid") from exc
    try:
        return TokenClaims(user_id=uuid.UUID(data["uid"]), role=str(data["role"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("token is not valid") from exc
