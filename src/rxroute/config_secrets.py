"""Which secret settings rxroute refuses outside development, and why.

rxroute publishes its demo secrets (README, ``.env.example``, the sandbox's accounts) so the
demo runs with no configuration; anywhere but development a published value, a placeholder
or an empty required secret must stop start-up, naming the variable. The values and the
rules live here once: :class:`rxroute.config.Settings` applies them to every ``SecretStr``
field, and the deployment manifests' test reads which secrets are optional. Signing keys
being rotated are also read here (:data:`PreviousKeys`).
"""

from __future__ import annotations

import json
import typing
from typing import Annotated, Any

from pydantic import SecretStr
from pydantic_settings import NoDecode

#: Values that mark a secret as "not really set". Refused outside development.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "demo-only")

#: Development-only defaults, so ``rxroute demo`` works with no configuration at all.
DEMO_ENCRYPTION_KEY = "demo-only-encryption-key-000000000000000000="
DEMO_SESSION_SECRET = "demo-only-session-secret"  # noqa: S105
DEMO_CSRF_SECRET = "demo-only-csrf-secret"  # noqa: S105
DEMO_LINK_SECRET = "demo-only-pharmacy-link-secret"  # noqa: S105
DEMO_WEBHOOK_SECRET = "demo-only-webhook-secret"  # noqa: S105
DEMO_ERX_CLIENT_ID = "rxroute-demo-client"
DEMO_ERX_CLIENT_SECRET = "demo-only-sandbox-client-secret"  # noqa: S105
#: ``whsec_`` + base64 of "demo-only-events-secret-00000000": signs the demo's own events.
DEMO_EVENTS_SECRET = "whsec_ZGVtby1vbmx5LWV2ZW50cy1zZWNyZXQtMDAwMDAwMDA="  # noqa: S105

#: Every secret value rxroute publishes (README, ``.env.example``, the sandbox's accounts):
#: known to anyone, so refused outside development even if no placeholder marker matched.
PUBLISHED_DEMO_SECRETS = (
    DEMO_ENCRYPTION_KEY,
    DEMO_SESSION_SECRET,
    DEMO_WEBHOOK_SECRET,
    DEMO_ERX_CLIENT_SECRET,
    DEMO_EVENTS_SECRET,
)

#: Secrets used only when another setting turns their feature on (events are sent only to
#: ``RXROUTE_EVENTS_URL``): checked like any other secret then, ignored otherwise.
SECRETS_NEEDED_ONLY_WITH = {"events_secret": "events_url"}

#: Secret settings that may stay empty (unset) outside development: rotation slots and
#: credentials only some deployments use. A value they do hold is checked like any other.
#: Every other secret setting is required; a new ``SecretStr`` field is required unless it
#: is added here on purpose.
OPTIONAL_SECRETS = frozenset(
    {
        "webhook_secret_previous",
        "smtp_password",
        "session_secret_previous",
        "csrf_secret_previous",
        "link_secret_previous",
        "metrics_token",
        "sentry_dsn",
    }
)


def is_placeholder(value: str) -> bool:
    """Whether a secret's text is a placeholder or contains a value rxroute publishes.

    A substring match, so a published value hidden in a comma-separated list of keys (or
    with a suffix added) is caught too.
    """
    lowered = value.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS) or any(
        published.lower() in lowered for published in PUBLISHED_DEMO_SECRETS
    )


def holds_secret(annotation: object) -> bool:
    """Whether a field's type is, or contains (``| None``, ``list[...]``), ``SecretStr``."""
    if annotation is SecretStr:
        return True
    return any(holds_secret(argument) for argument in typing.get_args(annotation))


def secret_texts(value: object) -> list[str] | None:
    """The raw text(s) of a secret setting's value; None when it is unset."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, list | tuple | set | frozenset):
        return [text for item in value for text in (secret_texts(item) or [])]
    raise TypeError(f"unexpected secret value of type {type(value).__name__}")


def secret_problem(name: str, texts: list[str] | None) -> str | None:
    """What is wrong with one secret setting outside development, or None."""
    variable = f"RXROUTE_{name.upper()}"
    if not texts or not any(text.strip() for text in texts):
        return None if name in OPTIONAL_SECRETS else f"{variable} is empty"
    if any(not text.strip() for text in texts):
        return f"{variable} has an empty entry"
    if any(is_placeholder(text) for text in texts):
        return f"{variable} still holds a placeholder or published demo value"
    return None


#: A list of earlier signing keys, still accepted while what they signed may be live. From the
#: environment: a JSON list of strings, or one plain key; empty means none.
PreviousKeys = Annotated[list[SecretStr], NoDecode]


def previous_keys(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    raw = value.strip()
    if not raw:
        return []
    if not raw.startswith(("[", "{")):
        return [raw]
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
        raise ValueError('must be a JSON list of strings, e.g. ["old-key-1", "old-key-2"]')
    return parsed
