"""Pharmacy queries. The search is the patient's type-ahead: it must stay fast on 200,000 rows.

Ranking puts postcode prefix matches first, then name prefix, then town prefix, then the
rest, so "LS1", "leeds" and "wellbeing le" find what a person expects. The statement is one
``UNION ALL`` with a branch per prefix rank, each reading a page from its own index in order
(``postcode_key``, ``name_key``, ``town_key``: see :class:`rxroute.models.Pharmacy`) and
stopping there, plus the rest, read only when the prefixes leave the page short. So no
query makes PostgreSQL collect and sort every match: a one-letter query matches most of the
region, and "chemist" a quarter of the country.

Prefixes are written as ranges (``key >= 'ab' AND key < 'ab' || U+10FFFF``) rather than
``LIKE 'ab%'``: a range keeps using the index when psycopg has prepared the statement and
PostgreSQL runs its generic plan, where a ``LIKE`` pattern built from a parameter cannot.
"""

from __future__ import annotations

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    distinct,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from rxroute.models import Pharmacy

MAX_QUERY_LENGTH = 100


def normalise_query(raw: str) -> str:
    """Lower-case, collapse spaces, drop LIKE wildcards and control characters."""
    cleaned = "".join(ch for ch in raw if ch.isprintable())
    cleaned = cleaned.replace("%", " ").replace("_", " ").replace("\\", " ")
    return " ".join(cleaned.lower().split())[:MAX_QUERY_LENGTH]


#: Words shorter than this match at the start of a word only; longer ones anywhere.
TRIGRAM_MIN = 3
#: How many of the best matches (by rank, then name) the similarity ordering looks at.
CANDIDATES = 200
#: The highest code point: no key has it after a prefix (it is not printable, so
#: :func:`normalise_query` drops it too), so ``p <= key < p + TOP`` means "starts with p".
TOP = "\U0010ffff"


def _needed(terms: str) -> list[str]:
    """The words that must occur, without repeats or words inside another ("leed leeds")."""
    words = list(dict.fromkeys(terms.split(" ")))
    return [w for w in words if not any(w != other and w in other for other in words)]


def starts_with(key: InstrumentedAttribute[str], prefix: str) -> ColumnElement[bool]:
    """``key`` starts with ``prefix``, as a btree range ("C" collation: byte order)."""
    return and_(key >= prefix, key < prefix + TOP)


def search_statement(region: str, query: str = "", *, limit: int = 20) -> Select[Pharmacy]:
    """Active pharmacies of ``region`` matching ``query``, best first, at most ``limit``.

    * empty: alphabetical by town and name, straight from ``ix_pharmacies_..._town_key``;
    * only short words (under three characters, e.g. "a", "m1 4"): a word of the name, town
      or postcode starting with what was typed - one letter finds what starts with it, not
      the thousands of names that merely contain it; ordered by rank, then by the key that
      matched (postcode, name, or town and name), then by name;
    * otherwise every word must occur somewhere; the first ``CANDIDATES`` by rank and key
      are then ordered by rank and trigram similarity. Among "the rest" (no prefix
      matched), the candidates are the first by id: arbitrary but stable, and cheap
      whether the word is rare or everywhere.
    """
    active = (Pharmacy.region == region, Pharmacy.active == true())
    terms = normalise_query(query)
    if not terms:
        return (
            select(Pharmacy)
            .where(*active)
            .order_by(Pharmacy.town_key, Pharmacy.name_key)
            .limit(limit)
        )
    compact = terms.replace(" ", "")
    short = all(len(word) < TRIGRAM_MIN for word in terms.split(" "))
    if short:
        # Short words match at the start of a word only: rank 1 is a prefix of search_text
        # itself (it starts with the name); anything else starts a later word.
        elsewhere = Pharmacy.search_text.contains(" " + terms, autoescape=True)
        page = limit
    else:
        elsewhere = and_(
            *(Pharmacy.search_text.contains(word, autoescape=True) for word in _needed(terms))
        )
        page = max(limit, CANDIDATES)
    # Each rank's first ``page`` rows in its own order (the order of its index). A row may
    # come from more than one branch; it keeps its best rank. Enough rows survive that: a
    # branch can lose to better ranks only rows the better branches returned in full.
    ranks = (
        (0, starts_with(Pharmacy.postcode_key, compact), Pharmacy.postcode_key),
        (1, starts_with(Pharmacy.name_key, terms), Pharmacy.name_key),
        (2, starts_with(Pharmacy.town_key, terms), Pharmacy.town_key),
    )
    prefixed = [
        select(
            Pharmacy.id,
            literal(rank).label("rank"),
            key.label("first"),
            Pharmacy.name_key,
            Pharmacy.search_text,
        )
        # A prefix of a key implies that every word occurs in search_text: no filter.
        .where(*active, condition)
        .order_by(key, Pharmacy.name_key)
        .limit(page)
        .subquery()
        .select()
        for rank, condition, key in ranks
    ]
    better = union_all(*prefixed).cte("better")
    # The rest is read only when the prefixes leave the page short. Its matches may be rare
    # (the trigram index finds them) or most of the region (reading in id order finds a
    # page at once; id, unlike name, does not cluster a chain's "Chemist"), and PostgreSQL
    # picks by the pattern's statistics; the gate spares it the case those statistics get
    # wrong, a word whose matches are nearly all prefix matches already found.
    found = select(func.count(distinct(better.c.id))).scalar_subquery()
    rest = (
        select(Pharmacy.id, literal(3), Pharmacy.name_key, Pharmacy.name_key, Pharmacy.search_text)
        .where(*active, elsewhere, found < page)
        .order_by(Pharmacy.id)
        .limit(page)
        .subquery()
        .select()
    )
    every = union_all(select(better), rest).subquery("every")
    best = (
        select(every)
        .ext(distinct_on(every.c.id))
        .order_by(every.c.id, every.c.rank)
        .subquery("best")
    )
    order = (best.c.rank, best.c.first, best.c.name_key)
    # Only the page's rows are read in full.
    if short:
        top = select(best.c.id, *order).order_by(*order).limit(limit).subquery("top")
        ordering: tuple[ColumnElement[object], ...] = (top.c.rank, top.c.first, top.c.name_key)
    else:
        candidates = select(best).order_by(*order).limit(page).subquery("candidates")
        similar = func.similarity(candidates.c.search_text, terms).label("similarity")
        top = (
            select(
                candidates.c.id,
                candidates.c.rank,
                similar,
                candidates.c.first,
                candidates.c.name_key,
            )
            .order_by(candidates.c.rank, similar.desc(), candidates.c.first, candidates.c.name_key)
            .limit(limit)
            .subquery("top")
        )
        ordering = (top.c.rank, top.c.similarity.desc(), top.c.first, top.c.name_key)
    return select(Pharmacy).join(top, top.c.id == Pharmacy.id).order_by(*ordering)


async def search(
    session: AsyncSession, region: str, query: str = "", *, limit: int = 20
) -> list[Pharmacy]:
    """See :func:`search_statement`."""
    return list(await session.scalars(search_statement(region, query, limit=limit)))
