"""Pharmacy search benchmark: the patient's type-ahead over 200,000 pharmacies, by query shape.

Run by hand::

    python bench/bench_search.py                  # embedded PostgreSQL in a temp dir
    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python bench/bench_search.py --pharmacies 200000 --rounds 40

It creates a fresh database (on the server RXROUTE_TEST_DATABASE_URL names, else an embedded
one), migrates it, seeds the demo accounts, generates ``--pharmacies`` synthetic Region B
pharmacies (about 150 towns, realistic postcodes and chain names), runs VACUUM ANALYZE, then
for every query of a mix of shapes (empty, one and two characters, common words, postcodes,
towns, a name and a town, odd characters) times, interleaved, one client at a time:

* ``endpoint``: ``GET /api/v1/pharmacies?region=B&q=...`` on the real app in process (httpx
  over ASGI, a patient's bearer token: auth, the query, JSON);
* ``search()``: :func:`rxroute.pharmacies.repository.search` in a session of the app's
  engine (statement building, SQLAlchemy, psycopg, the ORM objects);
* ``raw SQL``: the very statements ``search()`` sent (captured from the engine, with their
  parameters: the query, and the ``SET LOCAL`` that asks for a plan made for its values),
  executed in a transaction on a bare psycopg async connection and fetched - the floor.

It prints p50/p95 in milliseconds per shape for all three and the ratios to the raw SQL.
Then the same app is served by uvicorn on a free 127.0.0.1 port (in this process, on the
same runtime, as ``rxroute serve`` would) and ``--processes`` load processes, each with its
own httpx client and ``--users`` users typing at once, send the whole mix again over real
sockets: ``over HTTP`` is the endpoint as a client sees it with others searching alongside
(queueing included), beside the same raw SQL. It prints whether every shape meets the
targets (endpoint p95 <= 20 ms in process and over HTTP; ``search()`` <= 2x the raw SQL),
then drops the database. ``GET /api/v1/auth/me`` is timed too, as the cost any authenticated
endpoint pays before its own work. ``--explain`` prints the plan of one query per shape.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bench_load import in_process, serve
from bench_seed import drop_database, fresh_database
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.pharmacies import repository
from rxroute.runtime import Runtime, start_runtime, stop_runtime
from rxroute.seed import data
from rxroute.seed.service import seed_demo

TARGET_P95_MS = 20.0
TARGET_RATIO = 2.0
SHAPES = (
    "empty",
    "1 character",
    "2 characters",
    "common word",
    "postcode",
    "town",
    "name + town",
    "odd characters",
)

TOWNS = (
    "Aberdeen AB10",
    "Aylesbury HP19",
    "Barnsley S70",
    "Basildon SS14",
    "Basingstoke RG21",
    "Bath BA1",
    "Bedford MK40",
    "Birkenhead CH41",
    "Birmingham B1",
    "Blackburn BB1",
    "Blackpool FY1",
    "Bolton BL1",
    "Bournemouth BH1",
    "Bradford BD1",
    "Brighton BN1",
    "Bristol BS1",
    "Burnley BB11",
    "Bury BL9",
    "Cambridge CB1",
    "Canterbury CT1",
    "Cardiff CF10",
    "Carlisle CA1",
    "Chelmsford CM1",
    "Cheltenham GL50",
    "Chester CH1",
    "Chesterfield S40",
    "Colchester CO1",
    "Coventry CV1",
    "Crawley RH10",
    "Crewe CW1",
    "Darlington DL1",
    "Derby DE1",
    "Doncaster DN1",
    "Dudley DY1",
    "Durham DH1",
    "Eastbourne BN21",
    "Exeter EX1",
    "Gateshead NE8",
    "Gloucester GL1",
    "Grimsby DN31",
    "Guildford GU1",
    "Halifax HX1",
    "Harlow CM20",
    "Harrogate HG1",
    "Hartlepool TS24",
    "Hastings TN34",
    "Hereford HR1",
    "High Wycombe HP11",
    "Huddersfield HD1",
    "Hull HU1",
    "Ipswich IP1",
    "Kettering NN16",
    "Kingston KT1",
    "Lancaster LA1",
    "Leeds LS1",
    "Leicester LE1",
    "Lincoln LN1",
    "Liverpool L1",
    "Luton LU1",
    "Maidstone ME14",
    "Manchester M1",
    "Mansfield NG18",
    "Middlesbrough TS1",
    "Milton Keynes MK9",
    "Newcastle NE1",
    "Newport NP20",
    "Northampton NN1",
    "Norwich NR1",
    "Nottingham NG1",
    "Nuneaton CV11",
    "Oldham OL1",
    "Oxford OX1",
    "Peterborough PE1",
    "Plymouth PL1",
    "Poole BH15",
    "Portsmouth PO1",
    "Preston PR1",
    "Reading RG1",
    "Redditch B97",
    "Rochdale OL16",
    "Rotherham S60",
    "St Albans AL1",
    "St Helens WA10",
    "Salford M5",
    "Salisbury SP1",
    "Scunthorpe DN15",
    "Sheffield S1",
    "Shrewsbury SY1",
    "Slough SL1",
    "Solihull B91",
    "Southampton SO14",
    "Southend SS1",
    "Southport PR8",
    "Stafford ST16",
    "Stevenage SG1",
    "Stockport SK1",
    "Stockton TS18",
    "Stoke ST1",
    "Sunderland SR1",
    "Sutton SM1",
    "Swansea SA1",
    "Swindon SN1",
    "Taunton TA1",
    "Telford TF3",
    "Torquay TQ1",
    "Wakefield WF1",
    "Walsall WS1",
    "Warrington WA1",
    "Watford WD17",
    "Wigan WN1",
    "Winchester SO23",
    "Woking GU21",
    "Wolverhampton WV1",
    "Worcester WR1",
    "Worthing BN11",
    "York YO1",
    "Yeovil BA20",
    "Wrexham LL11",
    "Bangor LL57",
    "Lewisham SE13",
    "Croydon CR0",
    "Ealing W5",
    "Camden NW1",
    "Hackney E8",
    "Islington N1",
    "Brixton SW2",
    "Greenwich SE10",
    "Wembley HA9",
    "Ilford IG1",
    "Romford RM1",
    "Enfield EN1",
    "Harrow HA1",
    "Bromley BR1",
    "Hounslow TW3",
)
CHAINS = (
    "Wellbeing Pharmacy",
    "Kingsway Pharmacy",
    "Harbour Chemists",
    "Castle Pharmacy",
    "Boots",
    "Greenfield Chemist",
    "Riverside Pharmacy",
    "Parkview Pharmacy",
    "Station Pharmacy",
    "Market Chemist",
    "Oakwood Pharmacy",
    "Village Pharmacy",
    "Crescent Chemists",
    "Meadow Pharmacy",
    "Central Pharmacy",
    "Abbey Pharmacy",
)
STREETS = (
    "High Street",
    "Station Road",
    "Church Lane",
    "Market Place",
    "Park Road",
    "King Street",
    "Queen Street",
    "Mill Lane",
    "North Parade",
    "London Road",
    "Victoria Road",
    "Bridge Street",
)
LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


def query_mix(rng: random.Random, rounds: int) -> list[tuple[str, str]]:
    """(shape, query) pairs: ``rounds`` of each shape, shuffled."""
    towns = [t.rsplit(" ", 1) for t in TOWNS]
    letters = "abcdefghijklmnopqrstuvwxyz"
    odd = (
        "%",
        "_",
        "%%__",
        "\\",
        "'; drop table pharmacies; --",
        "<script>alert(1)</script>",
        "ümlaut straße",
        "名前",
        "🙂",
        "a" * 100,
        "x y z w v u t s r q p",
        "st. albans",
        "o'brien",
        "leeds " * 80,
    )
    common = ("pharmacy", "chemist", "chemists", "street", "road", "boots", "high street")
    mix: list[tuple[str, str]] = []
    for index in range(rounds):
        town, outward = rng.choice(towns)
        mix.append(("empty", ""))
        mix.append(("1 character", rng.choice(letters)))
        two = rng.choice(letters) + rng.choice(letters) if index % 2 else town[:2].lower()
        mix.append(("2 characters", two))
        mix.append(("common word", rng.choice(common)))
        code = f"{outward} {rng.randint(1, 9)}{rng.choice(LETTERS)}{rng.choice(LETTERS)}"
        mix.append(("postcode", rng.choice((outward, code, code.replace(" ", ""))).lower()))
        mix.append(("town", town[: rng.randint(3, len(town))].lower()))
        chain = rng.choice(CHAINS).split()[0].lower()
        mix.append(("name + town", f"{chain} {town[:3].lower()}"))
        mix.append(("odd characters", odd[index % len(odd)]))
    rng.shuffle(mix)
    return mix


def generate(rng: random.Random, count: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    names: set[str] = set()
    for index in range(count):
        town, outward = TOWNS[index % len(TOWNS)].rsplit(" ", 1)
        street = rng.choice(STREETS)
        name = f"{rng.choice(CHAINS)} {town} {street}"
        while name in names:
            name = f"{rng.choice(CHAINS)} {town} {street} {rng.randint(2, 999)}"
        names.add(name)
        postcode = f"{outward} {rng.randint(1, 9)}{rng.choice(LETTERS)}{rng.choice(LETTERS)}"
        rows.append(
            (
                uuid.uuid4(),
                name,
                f"{rng.randint(1, 300)} {street}",
                "",
                town,
                postcode,
                "B",
                f"bench-{index}@example.com",
                100_000 + index,
                True,
            )
        )
    return rows


def load_pharmacies(url: str, rows: list[tuple[object, ...]]) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        columns = (
            "id, name, address_line1, address_line2, town, postcode, region, email, "
            "platform_contact_id, active"
        )
        with cur.copy(f"COPY pharmacies ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE pharmacies")


def percentiles(samples: list[float]) -> tuple[float, float]:
    if len(samples) == 1:
        return samples[0], samples[0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94]


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the engine sends while inside, with its parameters."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def the_sql(runtime: Runtime, query: str) -> list[tuple[str, Any]]:
    """The statements ``search()`` sends for ``query`` (the SET for a custom plan, the query)."""
    with captured(runtime.engine) as statements:
        async with runtime.sessionmaker() as session:
            await repository.search(session, "B", query)
    assert 1 <= len(statements) <= 2, statements
    return statements


async def explain(url: str, runtime: Runtime, mix: list[tuple[str, str]]) -> None:
    shown: set[str] = set()
    async with await psycopg.AsyncConnection.connect(url) as raw:
        for shape, query in mix:
            if shape in shown:
                continue
            shown.add(shape)
            *setting, (sql, parameters) = await the_sql(runtime, query)
            for statement, values in setting:
                await raw.execute(statement, values)
            cursor = await raw.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + sql, parameters)
            plan = "\n".join(str(row[0]) for row in await cursor.fetchall())
            print(f"\n--- {shape}: {query!r}\n{plan}")


async def search_load(
    base: str, token: str, queries: list[tuple[str, str]], users: int
) -> list[tuple[str, float]]:
    """One load process: ``users`` people typing at once, over its own keep-alive
    connections, each sending the next query of ``queries`` when its last one is answered.
    Returns (shape, milliseconds) per answer."""
    answered: list[tuple[str, float]] = []
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        limits=limits,
        trust_env=False,
        timeout=30,
    ) as client:
        pending = iter(queries)

        async def user() -> None:
            for shape, query in pending:
                sent = time.perf_counter()
                response = await client.get(
                    "/api/v1/pharmacies", params={"region": "B", "q": query}
                )
                answered.append((shape, (time.perf_counter() - sent) * 1000))
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected {response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(user() for _ in range(users)))
    return answered


async def over_http(
    app: Any, token: str, mix: list[tuple[str, str]], processes: int, users: int
) -> tuple[dict[str, list[float]], float]:
    """Milliseconds per shape for the mix sent from ``processes`` processes (after a pass
    that opens the connections and warms the server), the app served by uvicorn here; and
    the server's CPU milliseconds per request (this process's, the load being elsewhere:
    what the machine's load changes least)."""
    by_shape: dict[str, list[float]] = defaultdict(list)
    cpu_ms = 0.0
    with ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        async with serve(app) as base:
            for warm_up in (True, False):
                cpu_started = time.process_time()
                parts = await asyncio.gather(
                    *(
                        in_process(pool, search_load, base, token, mix[n::processes], users)
                        for n in range(processes)
                    )
                )
                if warm_up:
                    continue
                cpu_ms = (time.process_time() - cpu_started) * 1000 / len(mix)
                for part in parts:
                    for shape, ms in part:
                        by_shape[shape].append(ms)
    return by_shape, cpu_ms


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def run(
    url: str,
    pharmacies: int,
    rounds: int,
    seed: int,
    show_plans: bool,
    pre_ping: bool,
    processes: int,
    users: int,
) -> bool:
    rng = random.Random(seed)
    settings = Settings(  # type: ignore[call-arg]
        database_url=url, log_level="WARNING", db_pool_pre_ping=pre_ping, _env_file=None
    )
    runtime = await start_runtime(settings, url)
    try:
        async with runtime.sessionmaker() as session, session.begin():
            await seed_demo(session, runtime.secret_box)
        started = time.perf_counter()
        await asyncio.to_thread(load_pharmacies, url, generate(rng, pharmacies))
        print(f"generated {pharmacies} pharmacies in {time.perf_counter() - started:.1f}s")
        mix = query_mix(rng, rounds)
        if show_plans:
            await explain(url, runtime, mix)

        from rxroute.app import create_app
        from rxroute.logging import configure_logging

        configure_logging("WARNING", json=True)
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as raw,
        ):
            token = await client.post(
                "/api/v1/auth/token",
                json={"email": data.DEMO_PATIENT_EMAIL, "password": data.DEMO_PASSWORD},
            )
            bearer = token.json()["access_token"]
            client.headers["Authorization"] = f"Bearer {bearer}"

            async def endpoint(q: str) -> None:
                response = await client.get("/api/v1/pharmacies", params={"region": "B", "q": q})
                if response.status_code != 200:
                    raise SystemExit(f"unexpected {response.status_code}: {response.text[:200]}")

            async def in_session(q: str) -> None:
                async with runtime.sessionmaker() as session:
                    await repository.search(session, "B", q)

            async def bare(statements: list[tuple[str, Any]]) -> None:
                async with raw.transaction():
                    for sql, parameters in statements:
                        cursor = await raw.execute(sql, parameters)
                    await cursor.fetchall()

            async def me() -> None:
                await client.get("/api/v1/auth/me")

            times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            for warm_up in (True, False):  # the first pass warms caches and prepares
                for shape, query in mix:
                    statements = await the_sql(runtime, query)
                    samples = (
                        await timed(lambda q=query: endpoint(q)),  # type: ignore[misc]
                        await timed(lambda q=query: in_session(q)),  # type: ignore[misc]
                        await timed(lambda s=statements: bare(s)),  # type: ignore[misc]
                        await timed(me),
                    )
                    if warm_up:
                        continue
                    for what, sample in zip(
                        ("endpoint", "search", "raw", "me"), samples, strict=True
                    ):
                        times[shape][what].append(sample)
        in_process_ok = report(times, pharmacies)  # printed before the HTTP phase starts
        http, cpu_ms = await over_http(app, bearer, mix, processes, users)
    finally:
        await stop_runtime()
    return report_http(http, cpu_ms, times, processes, users) and in_process_ok


def report(times: dict[str, dict[str, list[float]]], pharmacies: int) -> bool:
    print(
        f"\n{pharmacies} pharmacies, one client at a time, in process; p50/p95 in ms\n"
        f"{'shape':<16}{'endpoint':>14}{'search()':>14}{'raw SQL':>14}"
        f"{'search/raw':>12}{'endpoint/raw':>14}"
    )
    ok = True
    every: dict[str, list[float]] = defaultdict(list)
    for shape in SHAPES:
        got = times[shape]
        if not got:
            continue
        (e50, e95), (s50, s95), (r50, r95) = (
            percentiles(got[what]) for what in ("endpoint", "search", "raw")
        )
        for what in ("endpoint", "search", "raw", "me"):
            every[what].extend(got[what])
        met = e95 <= TARGET_P95_MS and s95 <= TARGET_RATIO * r95
        ok = ok and met
        print(
            f"{shape:<16}{e50:>6.2f} /{e95:>6.2f}{s50:>6.2f} /{s95:>6.2f}{r50:>6.2f} /{r95:>6.2f}"
            f"{s95 / r95:>11.2f}x{e95 / r95:>13.2f}x{'' if met else '  MISSED'}"
        )
    (e50, e95), (s50, s95), (r50, r95), (m50, m95) = (
        percentiles(every[what]) for what in ("endpoint", "search", "raw", "me")
    )
    print(
        f"{'all shapes':<16}{e50:>6.2f} /{e95:>6.2f}{s50:>6.2f} /{s95:>6.2f}"
        f"{r50:>6.2f} /{r95:>6.2f}{s95 / r95:>11.2f}x{e95 / r95:>13.2f}x"
    )
    print(f"GET /api/v1/auth/me (what any authenticated endpoint pays): {m50:.2f} / {m95:.2f}")
    print(
        f"\ntargets, every shape: endpoint p95 <= {TARGET_P95_MS:.0f} ms and search() p95 <= "
        f"{TARGET_RATIO:.0f}x the raw SQL's: {'met' if ok else 'MISSED'}"
    )
    print(json.dumps({"pharmacies": pharmacies, "met": ok}))
    return ok


def report_http(
    http: dict[str, list[float]],
    cpu_ms: float,
    times: dict[str, dict[str, list[float]]],
    processes: int,
    users: int,
) -> bool:
    print(
        f"\nover HTTP: uvicorn in this process, {processes} load processes x {users} users "
        "typing at once; p50/p95 in ms\n"
        f"{'shape':<16}{'over HTTP':>14}{'raw SQL':>14}{'HTTP/raw':>12}"
    )
    ok = True
    for shape in SHAPES:
        if not http[shape]:
            continue
        (h50, h95), (r50, r95) = percentiles(http[shape]), percentiles(times[shape]["raw"])
        met = h95 <= TARGET_P95_MS
        ok = ok and met
        print(
            f"{shape:<16}{h50:>6.2f} /{h95:>6.2f}{r50:>6.2f} /{r95:>6.2f}{h95 / r95:>11.2f}x"
            f"{'' if met else '  MISSED'}"
        )
    every = [ms for shape in SHAPES for ms in http[shape]]
    h50, h95 = percentiles(every)
    print(f"{'all shapes':<16}{h50:>6.2f} /{h95:>6.2f}")
    print(f"server CPU per request (uvicorn, app, SQLAlchemy, psycopg): {cpu_ms:.2f} ms")
    print(
        f"\ntarget over HTTP, every shape: p95 <= {TARGET_P95_MS:.0f} ms: "
        f"{'met' if ok else 'MISSED'}"
    )
    print(
        json.dumps(
            {
                "pharmacies_http_met": ok,
                "processes": processes,
                "users": users,
                "server_cpu_ms": round(cpu_ms, 3),
            }
        )
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pharmacies", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=40, help="queries of each shape")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print a plan per shape")
    parser.add_argument(
        "--pre-ping",
        action="store_true",
        help="ping each pooled connection at checkout (RXROUTE_DB_POOL_PRE_PING=true)",
    )
    parser.add_argument("--processes", type=int, default=2, help="HTTP load processes")
    parser.add_argument(
        "--users", type=int, default=1, help="users typing at once in each load process"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rxroute-bench-") as tmp:
        url, admin = fresh_database(Path(tmp))
        try:
            migrate.upgrade(url)
            ok = asyncio.run(
                run(
                    url,
                    args.pharmacies,
                    args.rounds,
                    args.seed,
                    args.explain,
                    args.pre_ping,
                    args.processes,
                    args.users,
                )
            )
        finally:
            drop_database(url, admin)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
