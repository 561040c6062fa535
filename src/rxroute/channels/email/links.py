"""Signed, expiring links a pharmacy uses to confirm it dispensed a Region A prescription.

The pharmacy has no rxroute account, so the link itself is the credential: it is signed with
its own key (``RXROUTE_LINK_SECRET``) under a purpose-specific salt (a token minted for
anything else cannot be replayed here) and carries its issue time, so old emails stop working
after the TTL. Links signed with a previous key (``RXROUTE_LINK_SECRET_PREVIOUS``) still
verify, so the key can be rotated without breaking links already emailed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

__all__ = [
    "DISPENSE_LINK_SALT",
    "DispenseLink",
    "LinkError",
    "LinkExpired",
    "LinkInvalid",
    "link_serializer",
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


def link_serializer(secrets: str | Sequence[str], salt: str) -> URLSafeTimedSerializer:
    """The signer of every emailed link, under the link key (``RXROUTE_LINK_SECRET``).

    ``secrets``: one key, or the current key then the previous ones. ``salt`` names the
    link's purpose, so a token minted for one purpose (confirming a dispense) is refused
    for another (unsubscribing from patient emails).
    """
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys or not all(keys):
        # An empty key would make every token forgeable; refuse rather than sign with it.
        raise ValueError("the link-signing secret is empty")
    if not salt:
        raise ValueError("a link needs its purpose (salt)")
    # itsdangerous signs with the last key and verifies with every key: newest last.
    return URLSafeTimedSerializer(keys[::-1], salt=salt)


def _serializer(secrets: str | Sequence[str]) -> URLSafeTimedSerializer:
    return link_serializer(secrets, DISPENSE_LINK_SALT)


@dataclass(frozen=True)
class DispenseLink:
    """What a confirmation link is bound to: one delivery of one prescription.

    The link works only while that delivery is the prescription's live one, so an old email
    cannot confirm a prescription that was since re-routed or cancelled.
    """

    prescription_id: str
    delivery_id: str
    nonce: str


def make_dispense_token(secret: str, link: DispenseLink) -> str:
    if not (link.prescription_id and link.delivery_id and link.nonce):
        raise ValueError("a dispense link needs the prescription, the delivery and a nonce")
    return _serializer(secret).dumps(
        {"rx": link.prescription_id, "d": link.delivery_id, "n": link.nonce}
    )


def read_dispense_token(
    secrets: str | Sequence[str], token: str, max_age_seconds: int
) -> DispenseLink:
    """The delivery the token was issued for, if signed by any of ``secrets`` (the current
    link key, then the previous ones).

    Raises :class:`LinkExpired` or :class:`LinkInvalid`; the messages never include the
    token, since it is a bearer credential.
    """
    if max_age_seconds < 0:
        raise ValueError("max_age_seconds must not be negative")
    try:
        payload = _serializer(secrets).loads(token, max_age=max_age_seconds)
    except SignatureExpired:
        raise LinkExpired("the confirmation link has expired") from None
    except BadData:
        raise LinkInvalid("the confirmation link is not valid") from None
    if not isinstance(payload, dict):
        raise LinkInvalid("the confirmation link is not valid")
    parts = (payload.get("rx"), payload.get("d"), payload.get("n"))
    if not all(isinstance(part, str) and part for part in parts):
        # Includes links minted before deliveries existed: not bound, so not honoured.
        raise LinkInvalid("the confirmation link is not valid")
    prescription_id, delivery_id, nonce = (str(part) for part in parts)
    return DispenseLink(prescription_id, delivery_id, nonce)
