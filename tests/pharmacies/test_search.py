"""The pharmacy type-ahead's results for each query shape: which pharmacies, in what order.

Timing is bench/bench_search.py's business; these pin down what the index-ordered search
(rxroute.pharmacies.repository) returns: ranks (postcode, name, town prefix, then the rest),
the order within a rank, one row per pharmacy, only active ones of the asked region.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Pharmacy
from rxroute.pharmacies import repository
from tests.factories import make_pharmacy


async def _names(session: AsyncSession, query: str, *, limit: int = 20) -> list[str]:
    return [p.name for p in await repository.search(session, "B", query, limit=limit)]


async def _add(session: AsyncSession, name: str, town: str, postcode: str, **extra: object) -> None:
    await make_pharmacy(session, "B", name=name, town=town, postcode=postcode, **extra)


async def test_empty_query_lists_by_town_then_name_active_and_in_region_only(
    session: AsyncSession,
) -> None:
    await _add(session, "Zeta Chemist", "York", "YO1 1AA")
    await _add(session, "Alpha Pharmacy", "York", "YO1 2AA")
    await _add(session, "Omega Pharmacy", "Bath", "BA1 1AA")
    await _add(session, "Closed Pharmacy", "Aberdeen", "AB10 1AA", active=False)
    await make_pharmacy(session, "A", name="Region A Pharmacy", town="Aberdeen")

    assert await _names(session, "") == ["Omega Pharmacy", "Alpha Pharmacy", "Zeta Chemist"]
    assert await _names(session, "   ", limit=2) == ["Omega Pharmacy", "Alpha Pharmacy"]


async def test_one_letter_ranks_postcode_then_name_then_town_then_a_later_word(
    session: AsyncSession,
) -> None:
    await _add(session, "Kingsway Pharmacy", "Bath", "M1 4AB")  # postcode starts with m
    await _add(session, "Meadow Pharmacy", "Leeds", "LS1 4AP")  # name starts with m
    await _add(session, "Abbey Pharmacy", "Leeds", "LS1 5AP")  # no word starts with m
    await _add(session, "Boots", "Manchester", "LS2 1AA")  # town starts with m
    await _add(session, "Castle Market Chemist", "Leeds", "LS3 1AA")  # a later word
    await _add(session, "Harmony Chemist", "Leeds", "LS4 1AA")  # m inside a word only
    await _add(session, "Mill Pharmacy", "Leeds", "LS5 1AA", active=False)

    assert await _names(session, "M") == [
        "Kingsway Pharmacy",
        "Meadow Pharmacy",
        "Boots",
        "Castle Market Chemist",
    ]


async def test_two_characters_and_a_short_postcode(session: AsyncSession) -> None:
    await _add(session, "Leeds Central Pharmacy", "Leeds", "LS1 4AP")
    await _add(session, "Station Pharmacy", "Leeds", "LS14 6AB")
    await _add(session, "Kingsway Pharmacy", "Lewisham", "SE13 5AA")
    await _add(session, "Castle Pharmacy", "York", "YO1 7AA")

    # No postcode starts with "le"; then the name, then the towns (in town, name order).
    assert await _names(session, "le") == [
        "Leeds Central Pharmacy",
        "Station Pharmacy",
        "Kingsway Pharmacy",
    ]
    # In postcode order, spaces ignored: "ls146ab" before "ls14ap".
    assert await _names(session, "ls") == ["Station Pharmacy", "Leeds Central Pharmacy"]
    # "ls1 4" is a postcode with or without its space: both LS1 4.. and LS14 ... match
    # ("ls1" has three characters: ranked by similarity within the postcode rank).
    found = await _names(session, "ls1 4")
    assert set(found) == {"Station Pharmacy", "Leeds Central Pharmacy"}
    assert await _names(session, "yo") == ["Castle Pharmacy"]
    assert await _names(session, "qq") == []


async def test_a_pharmacy_matching_several_ranks_is_listed_once_at_its_best(
    session: AsyncSession,
) -> None:
    await _add(session, "Leeds Pharmacy", "Leeds", "LS1 4AP")  # name and town start with le
    await _add(session, "Boots", "Leeds", "LS2 1AA")

    assert await _names(session, "le") == ["Leeds Pharmacy", "Boots"]
    assert await _names(session, "leeds") == ["Leeds Pharmacy", "Boots"]


async def test_a_word_keeps_its_ranks_and_every_word_must_occur(session: AsyncSession) -> None:
    await _add(session, "Highfield Pharmacy", "Leeds", "LS1 1AA")  # name prefix
    await _add(session, "Boots", "High Wycombe", "HP11 2AA")  # town prefix
    await _add(session, "Boots High Street", "Leeds", "LS2 2AA")  # elsewhere
    await _add(session, "Boots Station Road", "Leeds", "LS3 3AA")  # no "high"

    assert await _names(session, "high") == [
        "Highfield Pharmacy",
        "Boots",
        "Boots High Street",
    ]
    # Every word occurs in "Boots, High Wycombe" too, but only as a later word.
    assert await _names(session, "boots high") == ["Boots High Street", "Boots"]
    assert await _names(session, "high boots") == ["Boots", "Boots High Street"]


async def test_a_common_word_fills_the_page_and_a_prefix_still_comes_first(
    session: AsyncSession,
) -> None:
    """More matches than the similarity step looks at (CANDIDATES): the prefix match wins."""
    session.add_all(
        Pharmacy(
            name=f"Market Chemist {n:03d}",
            address_line1="1 Market Place",
            address_line2="",
            town="Leeds",
            postcode=f"LS{n % 20 + 1} 1AA",
            region="B",
            platform_contact_id=5001,
        )
        for n in range(repository.CANDIDATES + 50)
    )
    await _add(session, "Chemist Direct", "Bradford", "BD1 1AA")
    await _add(session, "Boots", "Chemistown", "CH1 1AA")
    await session.flush()

    found = await _names(session, "chemist")
    assert len(found) == 20
    assert found[:2] == ["Chemist Direct", "Boots"]
    assert all("chemist" in name.lower() for name in found[2:])
    assert len(set(found)) == 20


async def test_a_postcode_with_or_without_its_space(session: AsyncSession) -> None:
    await _add(session, "Meadow Pharmacy", "Leeds", "LS1 4AP")
    await _add(session, "Central Pharmacy", "Leeds", "LS1 4AQ")
    await _add(session, "Park Pharmacy", "Leeds", "LS14 4AP")

    # Park's "ls14 4ap" contains both words, but its postcode does not start with them.
    assert await _names(session, "LS1 4AP") == ["Meadow Pharmacy", "Park Pharmacy"]
    assert await _names(session, "ls14ap") == ["Meadow Pharmacy"]
    found = await _names(session, "ls1 4a")
    assert set(found[:2]) == {"Central Pharmacy", "Meadow Pharmacy"}
    assert found[2:] == ["Park Pharmacy"]


async def test_long_queries_rank_by_similarity_within_a_rank(session: AsyncSession) -> None:
    await _add(session, "Boots", "Leeds", "LS1 1AA")
    await _add(session, "Wellbeing Pharmacy Leeds Kirkstall Road", "Leeds", "LS4 2AA")
    await _add(session, "Wellbeing Leeds", "Leeds", "LS5 3AA")
    await _add(session, "Boots", "Bradford", "BD1 1AA")

    found = await _names(session, "wellbeing leeds")
    assert found == ["Wellbeing Leeds", "Wellbeing Pharmacy Leeds Kirkstall Road"]


async def test_symbols_match_only_at_the_start_of_a_key(session: AsyncSession) -> None:
    """Without a letter or digit the trigram index cannot help: no search inside names."""
    await _add(session, "🙂 Pharmacy", "Leeds", "LS1 1AA")
    await _add(session, "Boots 🙂", "Leeds", "LS2 1AA")
    await _add(session, "Boots !!! Chemist", "Leeds", "LS3 1AA")

    assert await _names(session, "🙂") == ["🙂 Pharmacy"]
    assert await _names(session, "!!!") == []
    assert await _names(session, "chemist") == ["Boots !!! Chemist"]


async def test_a_result_card_shows_what_the_pharmacy_row_holds(session: AsyncSession) -> None:
    """The search reads a card, not the ORM row: every field it shows matches the row's."""
    await make_pharmacy(
        session,
        "B",
        name="Card Pharmacy",
        address_line1="1 Example Street",
        address_line2="",
        town="Leeds",
        postcode="LS1 4AP",
        phone="+44 7700 900123",
        opening_hours="Mon-Fri 9-5",
    )
    [card] = await repository.search(session, "B", "card pharmacy")
    row = await session.get(Pharmacy, card.id)
    assert row is not None
    for name in repository.PharmacyCard.__slots__:
        assert getattr(card, name) == getattr(row, name), name
    assert card.full_address == row.full_address
    assert card.full_address == "1 Example Street, Leeds, LS1 4AP"
