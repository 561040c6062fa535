"""The admin audit trail: each admin change recorded with who made it, before and after.

The admin services (:mod:`rxroute.admin.service`) take a :func:`snapshot` before they change
a row and call :func:`record` after, in the same session: the event commits or rolls back
with the change itself. An update that changes nothing records nothing.

Secrets never enter the trail. A prescriber's platform login, password and signing PIN are
compared by their stored ciphertext only, and recorded as ``{"secret": "changed"}`` or
``{"secret": "removed"}`` - no value, no ciphertext, no length. An API client is recorded by
its name, scopes, key prefix and whether it is revoked: never its key or the key's hash.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import (
    AdminAuditEvent,
    ApiClient,
    AuditAction,
    AuditEntity,
    FormularyItem,
    Pharmacy,
    Prescriber,
    User,
)

#: What is recorded of a pharmacy.
PHARMACY_FIELDS = (
    "name",
    "address_line1",
    "address_line2",
    "town",
    "postcode",
    "region",
    "email",
    "platform_contact_id",
    "active",
    "code",
)
#: What is recorded, as values, of a prescriber.
PRESCRIBER_FIELDS = (
    "full_name",
    "email",
    "registration_number",
    "active",
    "platform_prescriber_id",
)
#: What is recorded of a user account (never its password hash: a reset is "removed").
USER_FIELDS = ("email", "role", "active", "prescriber_id")

#: What is recorded of a formulary line (it is never edited: created, then deactivated).
FORMULARY_FIELDS = (
    "description",
    "dmd_vpid",
    "dmd_apid",
    "default_quantity",
    "default_directions",
    "active",
)

#: What is recorded of an API client (the prefix tells a rotated key from the one before).
API_CLIENT_FIELDS = ("name", "scopes", "key_prefix", "revoked")
#: A prescriber's secrets: recorded as changed or removed, never with a value.
PRESCRIBER_SECRETS = {
    "platform_email": "platform_email_encrypted",
    "platform_password": "platform_password_encrypted",
    "signing_pin": "signing_pin_encrypted",
}

LABELS = {
    "name": "Name",
    "address_line1": "Address line 1",
    "address_line2": "Address line 2",
    "town": "Town",
    "postcode": "Postcode",
    "region": "Region",
    "email": "Email",
    "platform_contact_id": "Platform contact ID",
    "active": "Active",
    "full_name": "Name",
    "registration_number": "Registration number",
    "platform_prescriber_id": "Platform prescriber ID",
    "platform_email": "Platform login email",
    "platform_password": "Platform password",
    "signing_pin": "Signing PIN",
    "role": "Role",
    "password": "Password",
    "prescriber_id": "Prescriber record",
    "set_password_link": "Set-password link",
    "sessions": "Live sessions",
    "description": "Description",
    "dmd_vpid": "dm+d VPID",
    "dmd_apid": "dm+d APID",
    "default_quantity": "Default quantity",
    "default_directions": "Default directions",
    "scopes": "Scopes",
    "key_prefix": "Key prefix",
    "revoked": "Revoked",
    "code": "Code",
    "health": "Health check",
    "withheld": "Withheld from patients",
    "reason": "Reason",
}

Snapshot = dict[str, Any]
Audited = Pharmacy | Prescriber | User | FormularyItem | ApiClient


def _plain(value: Any) -> Any:
    """A JSON-storable value: text, number, boolean or null."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def snapshot(entity: Audited | None) -> Snapshot | None:
    """The recorded fields of ``entity`` now (secrets as their ciphertext, compared only)."""
    if entity is None:
        return None
    if isinstance(entity, ApiClient):
        return {
            "name": entity.name,
            "scopes": ", ".join(entity.scopes),
            "key_prefix": entity.key_prefix,
            "revoked": entity.revoked_at is not None,
        }
    if isinstance(entity, Pharmacy):
        return {name: _plain(getattr(entity, name)) for name in PHARMACY_FIELDS}
    if isinstance(entity, User):
        return {name: _plain(getattr(entity, name)) for name in USER_FIELDS}
    if isinstance(entity, FormularyItem):
        return {name: _plain(getattr(entity, name)) for name in FORMULARY_FIELDS}
    values = {name: _plain(getattr(entity, name)) for name in PRESCRIBER_FIELDS}
    for name, column in PRESCRIBER_SECRETS.items():
        values[name] = getattr(entity, column)
    return values


def changes_between(before: Snapshot | None, after: Snapshot) -> dict[str, Any]:
    """Each changed field as ``{"before", "after"}``; a secret as changed or removed.

    With no ``before`` (a creation) every field that has a value is listed.
    """
    changed: dict[str, Any] = {}
    for name, new in after.items():
        old = None if before is None else before.get(name)
        if before is not None and old == new:
            continue
        if before is None and new in (None, ""):
            continue
        if name in PRESCRIBER_SECRETS:
            changed[name] = {"secret": "removed" if new is None else "changed"}
        else:
            changed[name] = {"before": old, "after": new}
    return changed


def _entity_type(entity: Audited) -> AuditEntity:
    if isinstance(entity, User):
        return AuditEntity.USER
    if isinstance(entity, Pharmacy):
        return AuditEntity.PHARMACY
    if isinstance(entity, FormularyItem):
        return AuditEntity.FORMULARY
    if isinstance(entity, ApiClient):
        return AuditEntity.API_CLIENT
    return AuditEntity.PRESCRIBER


def record(
    session: AsyncSession,
    actor_id: uuid.UUID,
    entity: Audited,
    before: Snapshot | None,
    *,
    action: AuditAction | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AdminAuditEvent | None:
    """Add the event for ``entity``'s change since ``before`` (flushed with the change).

    ``action`` defaults to created (no ``before``) or updated. ``extra`` adds changes that
    are not fields of the row (an emailed link, a password made unusable), in the same
    ``{"before", "after"}`` or ``{"secret": ...}`` shapes. Returns None, adding nothing,
    when nothing changed.
    """
    after = snapshot(entity)
    assert after is not None
    changes = {**changes_between(before, after), **(extra or {})}
    if not changes:
        return None
    chosen = action or (AuditAction.CREATED if before is None else AuditAction.UPDATED)
    event = AdminAuditEvent(
        actor_user_id=actor_id,
        entity_type=_entity_type(entity).value,
        entity_id=entity.id,
        action=chosen.value,
        changes=changes,
    )
    session.add(event)
    return event


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    field: str
    label: str
    before: Any = None
    after: Any = None
    #: "changed" or "removed" for a secret (before and after are then never known).
    secret: str | None = None


@dataclass(frozen=True)
class AuditLine:
    id: uuid.UUID
    occurred_at: datetime
    actor: str
    entity_type: str
    entity_id: uuid.UUID
    entity_label: str
    action: str
    changes: list[FieldChange]

    @property
    def entity_url(self) -> str | None:
        if self.entity_type == AuditEntity.PHARMACY.value:
            return f"/admin/pharmacies/{self.entity_id}"
        if self.entity_type == AuditEntity.PRESCRIBER.value:
            return f"/admin/prescribers/{self.entity_id}"
        if self.entity_type == AuditEntity.FORMULARY.value:
            return "/admin/formulary"
        if self.entity_type == AuditEntity.API_CLIENT.value:
            return "/admin/api-clients"
        return None


def _field_changes(raw: Mapping[str, Any]) -> list[FieldChange]:
    found = []
    for name, change in raw.items():
        label = LABELS.get(name, name)
        if isinstance(change, Mapping) and "secret" in change:
            found.append(FieldChange(name, label, secret=str(change["secret"])))
        elif isinstance(change, Mapping):
            found.append(FieldChange(name, label, change.get("before"), change.get("after")))
    return found


async def _labels(
    session: AsyncSession, events: Sequence[AdminAuditEvent]
) -> tuple[dict[uuid.UUID, str], dict[tuple[str, uuid.UUID], str]]:
    """Actor emails, and each entity's current name (pharmacy, prescriber, API client), email
    (user) or description (formulary line)."""
    actor_ids = {event.actor_user_id for event in events}
    by_type: dict[str, set[uuid.UUID]] = {}
    for event in events:
        by_type.setdefault(event.entity_type, set()).add(event.entity_id)
    actors: dict[uuid.UUID, str] = {}
    if actor_ids:
        for user_id, email in await session.execute(
            select(User.id, User.email).where(User.id.in_(actor_ids))
        ):
            actors[user_id] = email
    names: dict[tuple[str, uuid.UUID], str] = {}
    sources = (
        (AuditEntity.PHARMACY, Pharmacy.id, Pharmacy.name),
        (AuditEntity.PRESCRIBER, Prescriber.id, Prescriber.full_name),
        (AuditEntity.USER, User.id, User.email),
        (AuditEntity.FORMULARY, FormularyItem.id, FormularyItem.description),
        (AuditEntity.API_CLIENT, ApiClient.id, ApiClient.name),
    )
    for kind, id_column, name_column in sources:
        wanted = by_type.get(kind.value)
        if wanted:
            for entity_id, name in await session.execute(
                select(id_column, name_column).where(id_column.in_(wanted))
            ):
                names[(kind.value, entity_id)] = name
    return actors, names


async def _lines(session: AsyncSession, events: Sequence[AdminAuditEvent]) -> list[AuditLine]:
    actors, names = await _labels(session, events)
    return [
        AuditLine(
            id=event.id,
            occurred_at=event.occurred_at,
            actor=actors.get(event.actor_user_id, str(event.actor_user_id)),
            entity_type=event.entity_type,
            entity_id=event.entity_id,
            entity_label=names.get((event.entity_type, event.entity_id), str(event.entity_id)),
            action=event.action,
            changes=_field_changes(event.changes),
        )
        for event in events
    ]


async def history(
    session: AsyncSession, entity_type: AuditEntity, entity_id: uuid.UUID, *, limit: int = 100
) -> list[AuditLine]:
    """One entity's events, newest first."""
    events = list(
        await session.scalars(
            select(AdminAuditEvent)
            .where(
                AdminAuditEvent.entity_type == entity_type.value,
                AdminAuditEvent.entity_id == entity_id,
            )
            .order_by(AdminAuditEvent.seq.desc())
            .limit(limit)
        )
    )
    return await _lines(session, events)


@dataclass(frozen=True)
class AuditPage:
    lines: list[AuditLine]
    total: int


async def recent(
    session: AsyncSession,
    *,
    entity_type: AuditEntity | None = None,
    offset: int = 0,
    limit: int = 50,
) -> AuditPage:
    """All events (or one kind of entity's), newest first, a page at a time."""
    statement = select(AdminAuditEvent)
    if entity_type is not None:
        statement = statement.where(AdminAuditEvent.entity_type == entity_type.value)
    total = await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    events = list(
        await session.scalars(
            statement.order_by(AdminAuditEvent.seq.desc()).offset(offset).limit(limit)
        )
    )
    return AuditPage(lines=await _lines(session, events), total=total)
