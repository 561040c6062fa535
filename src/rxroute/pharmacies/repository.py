"""Pharmacy queries. The search is the patient's type-ahead: it must stay fast on 20,000 rows.

Matching uses the trigram-indexed ``search_text`` (name, town, postcode with and without its
space). Ranking puts postcode and name prefix matches first, then trigram similarity, so
"LS1", "leeds" and "wellbeing le" all find what a person expects.
"""

from __future__ import annotations

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Pharmacy

MAX_QUERY_LENGTH = 100


def normalise_query(raw: str) -> str:
    """Lower-case, collapse spaces, drop LIKE wildcards and control characters."""
    cleaned = "".join(ch for ch in raw if ch.isprintable())
    cleaned = cleaned.replace("%", " ").replace("_", " ").replace("\\", " ")
    return " ".join(cleaned.lower().split())[:MAX_QUERY_LENGTH]


#: Words shorter than this cannot use the trigram index (a trigram needs three characters).
TRIGRAM_MIN = 3
#: How many of the cheaply ranked matches the similarity ordering looks at.
CANDIDATES = 200


async def search(
    session: AsyncSession, region: str, query: str = "", *, limit: int = 20
) -> list[Pharmacy]:
    """Active pharmacies of ``region`` matching ``query``, best first, at most ``limit``.

    Three shapes, so that no query makes PostgreSQL rank the whole region:

    * empty: alphabetical by town and name;
    * only short words (under three characters, e.g. "a", "m1 4"): a word of the name,
      town or postcode starting with it - typing one letter finds what starts with it, not
      the thousands of names that merely contain it;
    * otherwise every word must occur (the trigram index finds the rows), the matches are
      ranked cheaply (postcode, name, town prefix first) and only the best ``CANDIDATES``
      of them are ordered by trigram similarity, which is the expensive part.
    """
    base = select(Pharmacy).where(Pharmacy.region == region, Pharmacy.active.is_(True))
    terms = normalise_query(query)
    if not terms:
        result = await session.scalars(base.order_by(Pharmacy.town, Pharmacy.name).limit(limit))
        return list(result)
    words = terms.split(" ")
    compact = terms.replace(" ", "")
    postcode = func.lower(func.replace(Pharmacy.postcode, " ", ""))
    name = func.lower(Pharmacy.name)
    town = func.lower(Pharmacy.town)
    rank = case(
        (postcode.startswith(compact, autoescape=True), 0),
        (name.startswith(terms, autoescape=True), 1),
        (town.startswith(terms, autoescape=True), 2),
        else_=3,
    )
    if all(len(word) < TRIGRAM_MIN for word in words):
        # search_text is stored lower-cased, so no function runs per row: a word of the
        # name, town or postcode starting with what was typed.
        statement = base.where(
            or_(
                Pharmacy.search_text.startswith(terms, autoescape=True),
                Pharmacy.search_text.contains(" " + terms, autoescape=True),
            )
        ).order_by(rank, Pharmacy.name)
        return list(await session.scalars(statement.limit(limit)))
    matching = base
    for word in words:
        matching = matching.where(Pharmacy.search_text.contains(word, autoescape=True))
    candidates = (
        matching.with_only_columns(Pharmacy.id, rank.label("rank"))
        .order_by(rank, Pharmacy.name)
        .limit(max(limit, CANDIDATES))
        .subquery()
    )
    statement = (
        select(Pharmacy)
        .join(candidates, candidates.c.id == Pharmacy.id)
        .order_by(
            candidates.c.rank, func.similarity(Pharmacy.search_text, terms).desc(), Pharmacy.name
        )
        .limit(limit)
    )
    return list(await session.scalars(statement))
