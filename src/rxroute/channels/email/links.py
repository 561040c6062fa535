"""Signed, expiring links a pharmacy uses to confirm it dispensed a Region A prescription.

The pharmacy has no rxroute account, so the link itself is the credential: it is signed with
the session secret under a purpose-specific salt (a token minted for anything else cannot be
replayed here) and carries its issue time, so old emails stop working after the TTL.
"""

from __future__ import annotations

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

__all__ = [
    "DISPENSE_LINK_SALT",
    "LinkError",
    "LinkExpired",
    "LinkInvalid",
    "make_dispense_token",
    "read_dispense_token",
]

DISPENSE_LINK_SALT = "pharmacy-dispense-confirmation"


class LinkError(Exception):
    """The confirmation link cannot be honoured."""


class LinkExpired(LinkError):
    """Genuine, but older than the allowed age: the pharmacy should contact the clinic."""


class LinkInvalid(LinkError):
    """Not a token we issued (tampered, truncated, or signed with another secret or salt)."""


def _serializer(secret: str) -> URLSafeTimedSerializer:
    if not secret:
        # An empty key would make every token forgeable; refuse rather than sign with it.
        raise ValueError("the link-signing secret is empty")
    return URLSafeTimedSerializer(secret, salt=DISPENSE_LINK_SALT)


def make_dispense_token(secret: str, prescription_id: str) -> str:
    if not prescription_id:
        raise ValueError("prescription_id is empty")
    return _serializer(secret).dumps({"rx": prescription_id})


def read_dispense_token(secret: str, token: str, max_age_seconds: int) -> str:
    """The prescription ID the token was issued for.

    Raises :class:`LinkExpired` or :class:`LinkInvalid`; the messages never include the
    token, since it is a bearer credential.
    """
    if max_age_seconds < 0:
        raise ValueError("max_age_seconds must not be negative")
    try:
        payload = _serializer(secret).loads(token, max_age=max_age_seconds)
    except SignatureExpired:
        raise LinkExpired("the confirmation link has expired") from None
    except BadData:
        raise LinkInvalid("the confirmation link is not valid") from None
    prescription_id = payload.get("rx") if isinstance(payload, dict) else None
    if not isinstance(prescription_id, str) or not prescription_id:
        raise LinkInvalid("the confirmation link is not valid")
    return prescription_id
