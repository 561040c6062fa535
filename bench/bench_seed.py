"""Bulk-seed benchmark: ``add_prescriptions`` against a bare COPY of minimal rows.

Run by hand::

    python bench/bench_seed.py                      # embedded PostgreSQL in a temp folder
    RXROUTE_TEST_DATABASE_URL=postgresql://root@127.0.0.1:5432/test \\
        python bench/bench_seed.py --prescriptions 10000

It creates a fresh database (on the server RXROUTE_TEST_DATABASE_URL names, else an embedded
one), migrates it, seeds the demo data, then times

* ``add_prescriptions(session, N)`` in one transaction, as ``rxroute seed --prescriptions N``
  does (prescriptions and their 1-2 items each), and
* the baseline: the same number of prescription rows, plus one minimal item each, written by
  psycopg's ``COPY`` - the floor for getting that many rows into those tables.

It prints seconds and rows/s for both and their ratio, then drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import func, select

from rxroute.crypto import SecretBox
from rxroute.db import migrate
from rxroute.db.engine import create_engine, create_sessionmaker
from rxroute.db.scratch import create_scratch_database, drop_scratch_database
from rxroute.models import Prescription, PrescriptionItem
from rxroute.seed.service import add_prescriptions, seed_demo


def fresh_database(var_dir: Path) -> tuple[str, str]:
    """(url of a new empty database, admin url to drop it with)."""
    server = os.environ.get("RXROUTE_TEST_DATABASE_URL")
    return create_scratch_database("rxroute_bench", server, var_dir)


drop_database = drop_scratch_database

DEMO_KEY = "kWm0bnM6S0v7hI1b0oS5zYdCq8m0x3yQ2tQh8a4JfVg="


async def seed(url: str) -> None:
    engine = create_engine(url, pool_size=2)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await seed_demo(session, SecretBox([DEMO_KEY]))
    finally:
        await engine.dispose()


async def time_add_prescriptions(url: str, count: int) -> tuple[float, int, int]:
    """Seconds taken, prescriptions added, items added."""
    engine = create_engine(url, pool_size=2)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            items_before = await session.scalar(select(func.count()).select_from(PrescriptionItem))
        started = time.perf_counter()
        async with sessionmaker() as session, session.begin():
            added = await add_prescriptions(session, count)
        elapsed = time.perf_counter() - started
        async with sessionmaker() as session:
            items_after = await session.scalar(select(func.count()).select_from(PrescriptionItem))
            total = await session.scalar(select(func.count()).select_from(Prescription))
        assert total is not None and total >= added
        return elapsed, added, int(items_after or 0) - int(items_before or 0)
    finally:
        await engine.dispose()


def time_copy_baseline(url: str, count: int) -> float:
    """Seconds to COPY ``count`` minimal prescriptions and one minimal item each."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT p.id, r.id FROM patients p, prescribers r LIMIT 1").fetchone()
        assert row is not None, "seed first"
        patient_id, prescriber_id = row
        ids = [uuid.uuid4() for _ in range(count)]
        started = time.perf_counter()
        with conn.cursor() as cursor:
            with cursor.copy(
                "COPY prescriptions (id, patient_id, prescriber_id, status, notes) FROM STDIN"
            ) as copy:
                for prescription_id in ids:
                    copy.write_row((prescription_id, patient_id, prescriber_id, "draft", "bench"))
            with cursor.copy(
                "COPY prescription_items "
                "(id, prescription_id, position, description, quantity, directions) FROM STDIN"
            ) as copy:
                for prescription_id in ids:
                    copy.write_row((uuid.uuid4(), prescription_id, 0, "Bench item", "1", "Take"))
        conn.commit()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prescriptions", "-n", type=int, default=10_000)
    args = parser.parse_args()
    count: int = args.prescriptions

    with tempfile.TemporaryDirectory(prefix="rxroute-bench-") as tmp:
        url, admin = fresh_database(Path(tmp) / "var")
        where = (
            "RXROUTE_TEST_DATABASE_URL"
            if os.environ.get("RXROUTE_TEST_DATABASE_URL")
            else ("embedded PostgreSQL")
        )
        print(f"fresh database on {where}; {count} prescriptions")
        try:
            migrate.upgrade(url)
            asyncio.run(seed(url))
            seconds, added, items = asyncio.run(time_add_prescriptions(url, count))
            baseline = time_copy_baseline(url, count)
        finally:
            drop_database(url, admin)

    rows = added + items
    print(
        f"add_prescriptions: {seconds:8.3f} s  {added / seconds:10.0f} prescriptions/s  "
        f"({rows} rows incl. {items} items, {rows / seconds:.0f} rows/s)"
    )
    print(
        f"COPY baseline:     {baseline:8.3f} s  {count / baseline:10.0f} prescriptions/s  "
        f"({2 * count} rows, {2 * count / baseline:.0f} rows/s)"
    )
    print(f"ratio (add_prescriptions / COPY): {seconds / baseline:.2f}x slower")


if __name__ == "__main__":
    main()
