"""Asking PostgreSQL for a plan made with a statement's own values."""

from __future__ import annotations

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
