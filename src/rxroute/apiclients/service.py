"""Making, rotating and revoking API clients. Callers own the transaction (never commits).

The CLI (``rxroute apikey``) and the admin pages both come through here, so the rules (name
format, unique names, scopes known, a key shown once) live in one place.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.keys import new_key
from rxroute.apiclients.scopes import Scope
from rxroute.models import ApiClient

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")


class ApiClientError(ValueError):
    """A request about API clients that cannot be done, in words a person can act on."""

    def __init__(self, message: str, *, field: str = "name", status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status_code = status_code


@dataclass(frozen=True)
class IssuedKey:
    """A client and its key, which is shown this once."""

    client: ApiClient
    plain_key: str


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not NAME_PATTERN.fullmatch(cleaned):
        raise ApiClientError(
            "name: 1 to 100 letters, digits, spaces, dots, dashes or underscores, "
            "starting with a letter or digit"
        )
    return cleaned


async def find_by_name(session: AsyncSession, name: str) -> ApiClient | None:
    return await session.scalar(select(ApiClient).where(ApiClient.name == name.strip()))


async def create_client(
    session: AsyncSession,
    *,
    name: str,
    scopes: Sequence[Scope],
    created_by_id: uuid.UUID | None = None,
) -> IssuedKey:
    cleaned = check_name(name)
    if not scopes:
        raise ApiClientError("scopes: give at least one scope", field="scopes")
    if await find_by_name(session, cleaned) is not None:
        raise ApiClientError(
            f"name: an API client called {cleaned!r} already exists; pick another name "
            "or rotate its key",
            status_code=409,
        )
    key = new_key()
    client = ApiClient(
        name=cleaned,
        key_prefix=key.prefix,
        key_hash=key.digest,
        scopes=[scope.value for scope in scopes],
        created_by_id=created_by_id,
    )
    session.add(client)
    await session.flush()
    return IssuedKey(client=client, plain_key=key.plain)


async def _existing(session: AsyncSession, name: str) -> ApiClient:
    client = await find_by_name(session, name)
    if client is None:
        raise ApiClientError(f"name: no API client called {name.strip()!r}", status_code=404)
    return client


async def revoke_client(session: AsyncSession, name: str) -> ApiClient:
    """Stop the client's key at once (the next request with it gets 401). Idempotent."""
    client = await _existing(session, name)
    if client.revoked_at is None:
        client.revoked_at = datetime.now(UTC)
    await session.flush()
    return client


async def rotate_client(session: AsyncSession, name: str) -> IssuedKey:
    """A new key for the same client and scopes; the old key stops working at once."""
    client = await _existing(session, name)
    if client.revoked_at is not None:
        raise ApiClientError(
            f"name: {client.name!r} is revoked; create a new client instead", status_code=409
        )
    key = new_key()
    client.key_prefix = key.prefix
    client.key_hash = key.digest
    client.last_used_at = None
    await session.flush()
    return IssuedKey(client=client, plain_key=key.plain)


async def list_clients(session: AsyncSession) -> list[ApiClient]:
    return list(await session.scalars(select(ApiClient).order_by(ApiClient.name)))
