"""Deleting old rows in batches: the one way retention jobs remove what they keep no longer.

One short transaction per batch, so a purge of a large backlog (the first run after an
outage, or after the retention setting was lowered) never holds locks or a snapshot for
long and never competes with the hot paths for a big lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

#: Rows per batch: small enough for a short transaction, large enough to finish quickly.
PURGE_BATCH = 5000


async def delete_in_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    model: Any,
    *conditions: ColumnElement[bool],
    batch: int = PURGE_BATCH,
) -> int:
    """Delete the rows of ``model`` matching ``conditions``, ``batch`` at a time; how many."""
    purged = 0
    while True:
        async with sessionmaker() as session, session.begin():
            chosen = select(model.id).where(*conditions).limit(batch).scalar_subquery()
            result = await session.execute(
                delete(model)
                .where(model.id.in_(chosen))
                .execution_options(synchronize_session=False)
            )
        count = int(getattr(result, "rowcount", 0) or 0)
        purged += count
        if count < batch:
            return purged
