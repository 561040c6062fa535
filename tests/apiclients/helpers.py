"""Making API keys in tests: the same service the CLI and admin pages use."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.scopes import Scope
from rxroute.apiclients.service import create_client


async def make_api_key(session: AsyncSession, *scopes: Scope, name: str | None = None) -> str:
    """A committed client holding ``scopes`` (all of them when none are given); its key."""
    issued = await create_client(
        session,
        name=name or f"platform-{uuid.uuid4().hex[:8]}",
        scopes=list(scopes) or list(Scope),
    )
    await session.commit()
    return issued.plain_key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
