"""Lists and support search at volume: SQL time per list, with and without migration 0013's indexes.

Run by hand::

    python bench/bench_lists.py                       # embedded PostgreSQL in a temp dir
    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python bench/bench_lists.py --prescriptions 100000 --events-per 10 --runs 50

It creates a fresh database (on the server RXROUTE_TEST_DATABASE_URL names, else an embedded
one), migrates it to head, loads ``--prescriptions`` prescriptions with ``--events-per``
history rows each by SQL (``tests/db/volume.py``: 100,000 and 1,000,000 by default), runs
VACUUM ANALYZE, and for each list or search of ``tests/db/volume.py``'s catalogue (the
patient's, the prescriber's, support's list and searches, the console's problems,
reconciliation's candidates) captures the statements the real function sends, then times
exactly those statements on a bare psycopg connection, ``--runs`` times:

* ``server``: PostgreSQL's own planning + execution time for them (EXPLAIN ANALYZE), which
  the target is about, and
* ``client``: the same statements timed from psycopg (round trips and the decoding of the
  rows included: a 100-row list with its patients costs more there than in the server),

first with the indexes the lists had before migration 0013 (inside a transaction that drops
0013's and recreates the old ones, rolled back afterwards), then with 0013's. It prints
medians and p95s in milliseconds and whether each list meets the target: <= 2 ms of SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from bench_search import captured
from bench_seed import drop_database, fresh_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.runtime import Runtime, start_runtime, stop_runtime
from tests.db import volume

TARGET_MS = 2.0

#: The indexes as they were before 0013, recreated for the "before" figures.
BEFORE = (
    "DROP INDEX ix_prescriptions_patient_created",
    "DROP INDEX ix_prescriptions_prescriber_created",
    "DROP INDEX ix_prescriptions_created",
    "DROP INDEX ix_prescriptions_status_updated",
    "DROP INDEX ix_prescriptions_reconcile",
    "DROP INDEX ix_patients_lower_email",
    "CREATE INDEX ix_prescriptions_patient_id ON prescriptions (patient_id)",
    "CREATE INDEX ix_prescriptions_status ON prescriptions (status)",
    "CREATE INDEX ix_patients_email ON patients (email)",
    "ANALYZE prescriptions",
    "ANALYZE patients",
)

Statements = list[tuple[str, Any]]


async def statements_of(runtime: Runtime) -> dict[str, Statements]:
    """Each list's SELECTs, as the app sends them."""
    found: dict[str, Statements] = {}
    for name, query in volume.QUERIES.items():
        async with runtime.sessionmaker() as session:
            with captured(runtime.engine) as statements:
                await query(session, runtime)
        # The SETs too: support's search asks for plans made for its values (SET LOCAL).
        found[name] = [
            (sql, p) for sql, p in statements if sql.lstrip().startswith(("SELECT", "SET"))
        ]
    return found


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def measure(conn: psycopg.Connection[Any], statements: Statements, runs: int) -> dict[str, float]:
    client: list[float] = []
    server: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        for sql, parameters in statements:
            cursor = conn.execute(sql, parameters)
            if cursor.description is not None:
                cursor.fetchall()
        client.append((time.perf_counter() - started) * 1000)
        total = 0.0
        for sql, parameters in statements:
            if not sql.lstrip().startswith("SELECT"):
                conn.execute(sql, parameters)
                continue
            row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, parameters).fetchone()
            assert row is not None
            document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
            total += document[0]["Planning Time"] + document[0]["Execution Time"]
        server.append(total)
    return {
        "sql_p50": statistics.median(client),
        "sql_p95": p95(client),
        "server_p50": statistics.median(server),
        "server_p95": p95(server),
    }


def measure_all(
    url: str, lists: dict[str, Statements], runs: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    with psycopg.connect(url) as conn:
        for statement in BEFORE:
            conn.execute(statement)
        before = {name: measure(conn, statements, runs) for name, statements in lists.items()}
        conn.rollback()
        after = {name: measure(conn, statements, runs) for name, statements in lists.items()}
        conn.rollback()
    return before, after


async def run(url: str, prescriptions: int, events_per: int, runs: int) -> bool:
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        volume.load(conn, prescriptions=prescriptions, events_per=events_per)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    print(
        f"loaded {prescriptions:,} prescriptions, {prescriptions * events_per:,} history rows "
        f"in {time.perf_counter() - started:.1f}s"
    )
    settings = Settings(database_url=url, log_level="WARNING", _env_file=None)  # type: ignore[call-arg]
    runtime = await start_runtime(settings, url)
    try:
        lists = await statements_of(runtime)
    finally:
        await stop_runtime()
    before, after = await asyncio.to_thread(measure_all, url, lists, runs)

    print(
        f"\n{runs} runs each; ms, p50 / p95. server: PostgreSQL's planning + execution time "
        "of all the list's statements;\nclient: the same statements timed from psycopg "
        "(round trips and row decoding included)\n"
        f"{'list':<56}{'stmts':>5}{'server before':>16}{'server after':>16}"
        f"{'client after':>16}  target: server <= {TARGET_MS:.0f} ms"
    )
    ok = True
    for name, statements in lists.items():
        b, a = before[name], after[name]
        met = a["server_p95"] <= TARGET_MS
        ok = ok and met
        print(
            f"{name:<56}{len(statements):>5}{b['server_p50']:>8.2f} /{b['server_p95']:>6.2f}"
            f"{a['server_p50']:>8.2f} /{a['server_p95']:>6.2f}"
            f"{a['sql_p50']:>8.2f} /{a['sql_p95']:>6.2f}  {'met' if met else 'MISSED'}"
        )
    verdict = "met" if ok else "MISSED"
    print(f"\nevery list <= {TARGET_MS:.0f} ms of SQL (server p95, after): {verdict}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--prescriptions", type=int, default=100_000)
    parser.add_argument("--events-per", type=int, default=10)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rxroute-bench-") as tmp:
        url, admin = fresh_database(Path(tmp))
        try:
            migrate.upgrade(url)
            ok = asyncio.run(run(url, args.prescriptions, args.events_per, args.runs))
        finally:
            drop_database(url, admin)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
