"""The unsubscribe link in every patient email.

Signed like every emailed link, with the link key (``RXROUTE_LINK_SECRET``, previous keys
still verifying) under a purpose of its own, so a pharmacy's confirmation token cannot be
replayed here nor this one there. It names the patient only, and does not expire: an
unsubscribe link has to keep working for as long as the email is kept (it stops when its
key is dropped from the ring after a rotation).
"""

from __future__ import annotations

import uuid

from itsdangerous import BadData

from rxroute.auth.keys import link_keys
from rxroute.channels.email.links import LinkInvalid, link_serializer
from rxroute.config import Settings

UNSUBSCRIBE_SALT = "patient-notifications-unsubscribe"
#: Longer than any token we mint; a longer one is refused before it is parsed.
MAX_TOKEN = 500


def make_unsubscribe_token(settings: Settings, patient_id: uuid.UUID) -> str:
    serializer = link_serializer(link_keys(settings).verifying, UNSUBSCRIBE_SALT)
    return str(serializer.dumps({"pt": str(patient_id)}))


def read_unsubscribe_token(settings: Settings, token: str) -> uuid.UUID:
    """The patient the token was minted for; raises :class:`LinkInvalid` (never saying why,
    and never quoting the token: it is a bearer credential)."""
    if not token or len(token) > MAX_TOKEN:
        raise LinkInvalid("the unsubscribe link is not valid")
    serializer = link_serializer(link_keys(settings).verifying, UNSUBSCRIBE_SALT)
    try:
        payload = serializer.loads(token)
    except BadData:
        raise LinkInvalid("the unsubscribe link is not valid") from None
    raw = payload.get("pt") if isinstance(payload, dict) else None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise LinkInvalid("the unsubscribe link is not valid") from None


def unsubscribe_url(settings: Settings, patient_id: uuid.UUID) -> str:
    token = make_unsubscribe_token(settings, patient_id)
    return f"{settings.public_url.rstrip('/')}/notifications/unsubscribe/{token}"
