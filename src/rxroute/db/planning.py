"""Asking PostgreSQL for a plan made with a statement's own values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def plan_with_these_values(session: AsyncSession) -> None:
    """For the rest of this transaction, plan each statement for the values it is sent with.

    psycopg prepares a statement run five times on a connection, and PostgreSQL may then plan
    it once for all parameters (a generic plan). Where the best plan depends on the values
    (how common a word is, how many ids an array holds), that one plan is wrong for some of
    them by tens of milliseconds; planning anew costs a fraction of one.
    """
    await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


@asynccontextmanager
async def in_index_order(session: AsyncSession) -> AsyncIterator[None]:
    """Within the block, rows come back in order only by walking an index, never by a sort.

    For a statement that reads the newest rows matching a filter most rows pass (support's
    search by a common name), walking the ordering index stops after a page. PostgreSQL
    weighs that walk against reading every match and sorting, by its estimate of how many
    match, and an estimate for ``LIKE '%ash%'`` comes from a sample of a hundred values: from
    one ANALYZE to the next the same search was planned as that walk (1 ms) or as a read of
    every match and a sort (21 ms; ``bench/bench_lists.py``). The caller knows many match,
    so the sort is switched off for the block (``SET LOCAL``: this transaction only) and
    back to the server's setting after it; an error rolls the transaction, and the setting,
    back.
    """
    await session.execute(text("SET LOCAL enable_sort = off"))
    yield
    await session.execute(text("SET LOCAL enable_sort TO DEFAULT"))
