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

import dataclasses
import functools
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
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

from rxroute.db.planning import plan_with_these_values
from rxroute.models import Pharmacy
from rxroute.models.pharmacy import one_line_address

MAX_QUERY_LENGTH = 100


@dataclass(frozen=True, slots=True)
class PharmacyCard:
    """What a search result shows of a pharmacy: the chooser's card, not the whole row.

    The type-ahead runs on every keystroke, and loading ORM objects (identity map, state
    tracking) cost as much as the query itself on the cheapest shapes, so :func:`search`
    reads these columns as plain rows. A page that needs more loads the chosen pharmacy.
    """

    id: uuid.UUID
    name: str
    address_line1: str
    address_line2: str
    town: str
    postcode: str
    region: str
    phone: str | None
    opening_hours: str | None

    @property
    def full_address(self) -> str:
        return one_line_address(self.address_line1, self.address_line2, self.town, self.postcode)


#: The columns of :class:`PharmacyCard`, named and ordered by its fields.
_CARD_COLUMNS: tuple[InstrumentedAttribute[Any], ...] = tuple(
    getattr(Pharmacy, card_field.name) for card_field in dataclasses.fields(PharmacyCard)
)
#: A statement reading :data:`_CARD_COLUMNS`.
CardSelect = Select[*tuple[Any, ...]]


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


def _like(text: str) -> str:
    """``text`` as a ``LIKE`` pattern's literal part (escape character ``/``)."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def search_parameters(
    region: str, query: str = "", *, limit: int = 20
) -> tuple[CardSelect, dict[str, object]]:
    """The search for ``query`` as (statement, parameters): see :func:`_statement`.

    The statement depends only on the query's shape (empty, short, or how many words), so
    it is built once per shape and SQLAlchemy's compiled form is reused; building it anew
    for every keystroke cost more than running it.
    """
    parameters: dict[str, object] = {"region": region, "limit": limit}
    terms = normalise_query(query)
    if not terms:
        return _statement("empty", 0), parameters
    compact = terms.replace(" ", "")
    short = all(len(word) < TRIGRAM_MIN for word in terms.split(" "))
    parameters.update(
        terms=terms,
        terms_top=terms + TOP,
        compact=compact,
        compact_top=compact + TOP,
        page=limit if short else max(limit, CANDIDATES),
        # A word with no letter or digit ("🙂", "!!!") gives the trigram index nothing to
        # look up: finding it anywhere but at the start of a key would read every row.
        anywhere=all(any(ch.isalnum() for ch in word) for word in terms.split(" ")),
    )
    if short:
        # Short words match at the start of a word only: rank 1 is a prefix of search_text
        # itself (it starts with the name); anything else starts a later word.
        parameters["word0"] = f"% {_like(terms)}%"
        return _statement("short", 1), parameters
    words = _needed(terms)
    parameters.update({f"word{i}": f"%{_like(word)}%" for i, word in enumerate(words)})
    return _statement("long", len(words)), parameters


@functools.cache
def _statement(shape: str, words: int) -> CardSelect:
    """Active pharmacies of ``:region`` matching the query, best first, at most ``:limit``.

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
    # A withheld pharmacy (its platform contact was rejected) is left out until cleared.
    active = (
        Pharmacy.region == bindparam("region"),
        Pharmacy.active == true(),
        Pharmacy.withheld_at.is_(None),
    )
    limit = bindparam("limit", type_=Integer)
    if shape == "empty":
        return (
            select(*_CARD_COLUMNS)
            .where(*active)
            .order_by(Pharmacy.town_key, Pharmacy.name_key)
            .limit(limit)
        )
    page = bindparam("page", type_=Integer)
    terms, terms_top = bindparam("terms", type_=String), bindparam("terms_top", type_=String)
    compact = bindparam("compact", type_=String)
    compact_top = bindparam("compact_top", type_=String)
    elsewhere = and_(
        *(
            Pharmacy.search_text.like(bindparam(f"word{i}", type_=String), escape="/")
            for i in range(words)
        )
    )
    # Each rank's first ``page`` rows in its own order (the order of its index). A row may
    # come from more than one branch; it keeps its best rank. Enough rows survive that: a
    # branch can lose to better ranks only rows the better branches returned in full.
    # ``lo <= key < lo || U+10FFFF`` is "key starts with lo" in the "C" collation.
    ranks = (
        (0, Pharmacy.postcode_key, compact, compact_top),
        (1, Pharmacy.name_key, terms, terms_top),
        (2, Pharmacy.town_key, terms, terms_top),
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
        .where(*active, key >= low, key < high)
        .order_by(key, Pharmacy.name_key)
        .limit(page)
        .subquery()
        .select()
        for rank, key, low, high in ranks
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
        .where(*active, elsewhere, bindparam("anywhere", type_=Boolean), found < page)
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
    if shape == "short":
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
    return select(*_CARD_COLUMNS).join(top, top.c.id == Pharmacy.id).order_by(*ordering)


async def search(
    session: AsyncSession, region: str, query: str = "", *, limit: int = 20
) -> list[PharmacyCard]:
    """Active pharmacies of ``region`` matching ``query``, best first: see :func:`_statement`.

    It runs on the session's connection (so in its transaction) but as a Core statement:
    the rows become :class:`PharmacyCard`, not ORM objects.
    """
    statement, parameters = search_parameters(region, query, limit=limit)
    if len(parameters) > 2:
        # The best plan for "the rest" depends on how common the word is (a bitmap over
        # 100,000 "street" rows takes 40 ms), so no plan made for another word.
        await plan_with_these_values(session)
    connection = await session.connection()
    return [PharmacyCard(*row) for row in await connection.execute(statement, parameters)]
