"""The sample formulary shipped with rxroute: the medicines the demo prescribes.

One source: ``sample.csv`` here, in the admin import's own format and read by the import's
own checks, so the sample is always a file an admin could import. ``rxroute seed`` loads it
into the table and writes the demo's prescriptions from it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.formulary.service import LineInput, check_file, new_item
from rxroute.models import FormularyItem
from rxroute.prescriptions.writing import DraftItem

SAMPLE_CSV = Path(__file__).resolve().with_name("sample.csv")


@functools.cache
def sample_lines() -> tuple[LineInput, ...]:
    report, accepted = check_file(SAMPLE_CSV.read_bytes(), set())
    if not report.ok:
        raise ValueError(f"the sample formulary has rejected rows: {report.rejected}")
    return tuple(accepted)


def sample_medicines() -> tuple[DraftItem, ...]:
    """Each sample line as a prescription item with its defaults."""
    return tuple(
        DraftItem(
            description=line.values["description"],
            quantity=line.values["default_quantity"],
            directions=line.values["default_directions"],
            dmd_vpid=line.values["dmd_vpid"] or None,
            dmd_apid=line.values["dmd_apid"] or None,
        )
        for line in sample_lines()
    )


async def add_sample(session: AsyncSession) -> int:
    """Load the sample into an empty formulary (an admin's own list is left alone).

    Seed data, like the seed's pharmacies: no admin made it, so no audit event.
    """
    if await session.scalar(select(func.count()).select_from(FormularyItem)):
        return 0
    items = [new_item(line) for line in sample_lines()]
    session.add_all(items)
    await session.flush()
    return len(items)
