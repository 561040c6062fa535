"""Pharmacy queries. The search is the patient's type-ahead: it must stay fast on 20,000 rows.

Matching uses the trigram-indexed ``search_text`` (name, town, postcode with and without its
space). Ranking puts postcode and name prefix matches first, then trigram similarity, so
"LS1", "leeds" and "wellbeing le" all find what a person expects.
"""

from __future__ import annotations

import uuid

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Pharmacy

MAX_QUERY_LENGTH = 100


def normalise_query(raw: str) -> str:
    """Lower-case, collapse spaces, drop LIKE wildcards and control characters."""
    cleaned = "".join(ch for ch in raw if ch.isprintable())
    cleaned = cleaned.replace("%", " ").replace("_", " ").replace("\\", " ")
    return " ".join(cleaned.lower().split())[:MAX_QUERY_LENGTH]


async def search(
    session: AsyncSession, region: str, query: str = "", *, limit: int = 20
) -> list[Pharmacy]:
    statement = select(Pharmacy).where(Pharmacy.region == region, Pharmacy.active.is_(True))
    terms = normalise_query(query)
    if not terms:
        statement = statement.order_by(Pharmacy.town, Pharmacy.name)
    else:
        words = terms.split(" ")
        for word in words:
            statement = statement.where(Pharmacy.search_text.contains(word, autoescape=True))
        compact = terms.replace(" ", "")
        rank = case(
            (func.lower(func.replace(Pharmacy.postcode, " ", "")).startswith(compact), 0),
            (func.lower(Pharmacy.name).startswith(terms), 1),
            (func.lower(Pharmacy.town).startswith(terms), 2),
            else_=3,
        )
        statement = statement.order_by(
            rank, func.similarity(Pharmacy.search_text, terms).desc(), Pharmacy.name
        )
    result = await session.scalars(statement.limit(limit))
    return list(result)


async def get_active_in_region(session: AsyncSession, pharmacy_id: uuid.UUID) -> Pharmacy | None:
    return await session.get(Pharmacy, pharmacy_id)
