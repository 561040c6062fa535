"""Where events go: the default endpoint from settings, and the endpoints admins add.

The default endpoint's row exists so its deliveries have an endpoint like any other; its
URL and secret are read from ``RXROUTE_EVENTS_URL``/``RXROUTE_EVENTS_SECRET`` when an event
is sent, so changing them needs no data change. An endpoint added in admin gets a fresh
``whsec_`` secret, shown once and stored encrypted. Services add and flush; the caller
commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Select, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Environment, Settings
from rxroute.crypto import DecryptionError, SecretBox
from rxroute.events.catalogue import ALL_EVENT_TYPES
from rxroute.events.secrets import InvalidEndpointUrl, check_endpoint_url, new_secret
from rxroute.models import EventEndpoint

DEFAULT_DESCRIPTION = "Default (RXROUTE_EVENTS_URL)"
MAX_DESCRIPTION = 200


@dataclass(frozen=True)
class Target:
    """Where one attempt goes and the secret it is signed with."""

    url: str
    secret: str


class TargetUnavailable(Exception):
    """The endpoint cannot be sent to now; the message says why (PHI-free, no secret)."""


def display_url(endpoint: EventEndpoint, settings: Settings) -> str:
    if endpoint.is_default:
        return settings.events_url or "(RXROUTE_EVENTS_URL is not set)"
    return endpoint.url or ""


def target_for(endpoint: EventEndpoint, settings: Settings, box: SecretBox) -> Target | None:
    """The URL and secret for a delivery now; None when the default has no URL set.

    Raises :class:`TargetUnavailable` when the stored secret cannot be decrypted (the
    encryption key was rotated out): that counts as a failed attempt, visibly.
    """
    if endpoint.is_default:
        if not settings.events_url:
            return None
        return Target(settings.events_url, settings.events_secret.get_secret_value())
    if not endpoint.url or not endpoint.secret_encrypted:
        return None
    try:
        secret = box.decrypt(endpoint.secret_encrypted)
    except DecryptionError as exc:
        raise TargetUnavailable(
            "the endpoint's secret cannot be decrypted with RXROUTE_ENCRYPTION_KEYS"
        ) from exc
    return Target(endpoint.url, secret)


async def _default_endpoint_id(session: AsyncSession) -> uuid.UUID:
    """The default endpoint's row, created the first time an event needs it."""
    created: uuid.UUID | None = await session.scalar(
        insert(EventEndpoint)
        .values(
            id=uuid.uuid4(),
            is_default=True,
            description=DEFAULT_DESCRIPTION,
            event_types=[],
            active=True,
        )
        .on_conflict_do_nothing(index_elements=["is_default"], index_where=text("is_default"))
        .returning(EventEndpoint.id)
    )
    if created is not None:
        return created
    existing: uuid.UUID = (
        await session.scalars(select(EventEndpoint.id).where(EventEndpoint.is_default))
    ).one()
    return existing


#: The columns :func:`wanted_endpoints` decides from, in this order.
ENDPOINT_COLUMNS = (
    EventEndpoint.id,
    EventEndpoint.is_default,
    EventEndpoint.active,
    EventEndpoint.event_types,
)
#: The rows worth reading: an inactive default still tells us the default row exists.
ENDPOINT_ROWS = EventEndpoint.active | EventEndpoint.is_default
#: An endpoint that may want an event: id, is_default, active, event_types.
Candidate = tuple[uuid.UUID, bool, bool, list[str]]


def candidate_endpoints() -> Select[uuid.UUID, bool, bool, list[str]]:
    """The rows :func:`wanted_endpoints` chooses from: every endpoint that may want an event.

    The outbox reads them in the statement that writes the event (one round trip per move).
    """
    return select(*ENDPOINT_COLUMNS).where(ENDPOINT_ROWS)


def wanted_endpoints(
    rows: Iterable[tuple[uuid.UUID, bool, bool, list[str] | None]],
    settings: Settings,
    event_type: str,
) -> tuple[list[uuid.UUID], bool]:
    """The endpoints (of ``rows``, see :data:`ENDPOINT_COLUMNS`) that want ``event_type``,
    and whether the default endpoint's row is still to be created (``RXROUTE_EVENTS_URL``
    is set but no default row exists yet)."""
    wanted: list[uuid.UUID] = []
    has_default = False
    for endpoint_id, is_default, active, event_types in rows:
        if is_default:
            has_default = True
            if not settings.events_url:
                continue
        if active and (not event_types or event_type in event_types):
            wanted.append(endpoint_id)
    return wanted, bool(settings.events_url) and not has_default


async def endpoints_for(
    session: AsyncSession,
    settings: Settings,
    event_type: str,
    rows: Iterable[Candidate] | None = None,
) -> list[uuid.UUID]:
    """The active endpoints that want ``event_type`` (the default one while its URL is set).

    ``rows``: :func:`candidate_endpoints` already read by the caller; read here if None.
    """
    if rows is None:
        rows = list((await session.execute(candidate_endpoints())).tuples())
    wanted, default_missing = wanted_endpoints(rows, settings, event_type)
    if default_missing:
        wanted.append(await _default_endpoint_id(session))
    return wanted


# --- admin ------------------------------------------------------------------------------


@dataclass
class EndpointForm:
    """What was typed, and a message per field that needs fixing."""

    url: str = ""
    description: str = ""
    event_types: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def check_form(
    settings: Settings, url: str, description: str, event_types: Iterable[str]
) -> EndpointForm:
    form = EndpointForm(url=url.strip(), description=description.strip())
    known = {t.value for t in ALL_EVENT_TYPES}
    chosen = [t for t in dict.fromkeys(event_types)]
    unknown = [t for t in chosen if t not in known]
    form.event_types = [t for t in chosen if t in known]
    if not form.url:
        form.errors["url"] = "Enter the URL events are posted to."
    else:
        try:
            check_endpoint_url(
                form.url, require_https=settings.environment is not Environment.DEVELOPMENT
            )
        except InvalidEndpointUrl as exc:
            form.errors["url"] = f"The URL {exc}."
    if len(form.description) > MAX_DESCRIPTION:
        form.errors["description"] = f"At most {MAX_DESCRIPTION} characters."
    if unknown:
        form.errors["event_types"] = "Choose event types from the list."
    return form


async def create_endpoint(
    session: AsyncSession, box: SecretBox, form: EndpointForm
) -> tuple[EventEndpoint, str]:
    """Add an endpoint from a checked form; returns it and its secret (shown only once)."""
    if form.errors:
        raise ValueError("the form has errors")
    secret = new_secret()
    endpoint = EventEndpoint(
        id=uuid.uuid4(),
        is_default=False,
        url=form.url,
        secret_encrypted=box.encrypt(secret),
        description=form.description,
        event_types=form.event_types,
        active=True,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def set_active(session: AsyncSession, endpoint: EventEndpoint, active: bool) -> None:
    """Disabled: no new events are given to it and its queued ones wait (none is dropped);
    enabled again, they are sent in order."""
    endpoint.active = active
    await session.flush()
