"""Pharmacy search benchmark: the patient's type-ahead over 20,000 pharmacies.

Run by hand::

    python bench/bench_pharmacy_search.py                  # embedded PostgreSQL in a temp dir
    RXROUTE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python bench/bench_pharmacy_search.py --pharmacies 20000 --requests 3000

It creates a fresh database (on the server RXROUTE_TEST_DATABASE_URL names, else an embedded
one), migrates it, seeds the demo accounts, generates ``--pharmacies`` synthetic Region B
pharmacies (about 150 towns, realistic postcodes and chain names), runs ANALYZE, then calls
the real app in process (httpx over ASGI, a patient's bearer token) and times

* ``GET /api/v1/pharmacies?region=B&q=...`` over a query mix like a patient's typing: town
  prefixes, postcode prefixes, name words, empty, single letters, odd characters and very
  long input, and
* the baseline: ``GET /api/v1/auth/me`` on the same app in the same run (token check, one
  primary-key read) - the floor any authenticated endpoint pays.

It prints p50/p95/p99 in milliseconds for both, their ratio, the p95 of each query kind, and
whether search meets its target (p95 <= 20 ms), then drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psycopg
from bench_seed import drop_database, fresh_database

from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.runtime import start_runtime, stop_runtime
from rxroute.seed import data
from rxroute.seed.service import seed_demo

TARGET_P95_MS = 20.0

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


def query_mix(rng: random.Random) -> list[tuple[str, str]]:
    """(kind, query) pairs, weighted roughly like real type-ahead traffic."""
    towns = [t.rsplit(" ", 1) for t in TOWNS]
    mix: list[tuple[str, str]] = []
    for _ in range(40):
        town, outward = rng.choice(towns)
        cut = rng.randint(2, len(town))
        mix.append(("town prefix", town[:cut].lower()))
        mix.append(
            ("postcode prefix", outward if rng.random() < 0.5 else f"{outward} {rng.randint(1, 9)}")
        )
        mix.append(("name words", rng.choice(CHAINS).split()[0].lower()))
        chain = rng.choice(CHAINS).split()[0].lower()
        mix.append(("name + town", f"{chain} {town[:3].lower()}"))
    for _ in range(10):
        mix.append(("empty", ""))
        mix.append(("single letter", rng.choice("abcdefghijklmnoprstw")))
    for odd in (
        "%",
        "_",
        "%%__",
        "\\",
        "'; drop table pharmacies; --",
        "<script>alert(1)</script>",
        "ümlaut straße",
        "名前",
        "🙂",
        "   ",
        "a" * 100,
        "x y z w v u t s r q p",
        "ls1  4ap",
        "LS14AP",
        "st. albans",
        "o'brien",
    ):
        mix.append(("odd characters", odd))
    mix.append(("very long", "leeds " * 80))
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
        conn.execute("ANALYZE pharmacies")


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> float:
    started = time.perf_counter()
    response = await call()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"unexpected {response.status_code}: {response.text[:200]}")
    return elapsed


async def run(url: str, pharmacies: int, requests: int, seed: int) -> bool:
    rng = random.Random(seed)
    settings = Settings(database_url=url, log_level="WARNING", _env_file=None)  # type: ignore[call-arg]
    runtime = await start_runtime(settings, url)
    try:
        async with runtime.sessionmaker() as session, session.begin():
            await seed_demo(session, runtime.secret_box)
        started = time.perf_counter()
        await asyncio.to_thread(load_pharmacies, url, generate(rng, pharmacies))
        print(f"generated {pharmacies} pharmacies in {time.perf_counter() - started:.1f}s")

        from rxroute.app import create_app
        from rxroute.logging import configure_logging

        configure_logging("WARNING", json=True)
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            token = await client.post(
                "/api/v1/auth/token",
                json={"email": data.DEMO_PATIENT_EMAIL, "password": data.DEMO_PASSWORD},
            )
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            mix = query_mix(rng)

            def search(q: str) -> Callable[[], Awaitable[httpx.Response]]:
                return lambda: client.get("/api/v1/pharmacies", params={"region": "B", "q": q})

            def me() -> Awaitable[httpx.Response]:
                return client.get("/api/v1/auth/me")

            for kind_query in mix[:60]:  # warm up caches and connections
                await timed(search(kind_query[1]))
                await timed(me)
            by_kind: dict[str, list[float]] = defaultdict(list)
            search_ms: list[float] = []
            baseline_ms: list[float] = []
            for index in range(requests):
                kind, query = mix[index % len(mix)]
                elapsed = await timed(search(query))
                search_ms.append(elapsed)
                by_kind[kind].append(elapsed)
                baseline_ms.append(await timed(me))
    finally:
        await stop_runtime()

    s50, s95, s99 = percentiles(search_ms)
    b50, b95, b99 = percentiles(baseline_ms)
    print(f"\n{requests} requests each, in process (httpx over ASGI), one client at a time")
    print(f"{'endpoint':<44}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    print(f"{'GET /api/v1/pharmacies?region=B&q=...':<44}{s50:>9.2f}{s95:>9.2f}{s99:>9.2f}")
    print(f"{'GET /api/v1/auth/me (baseline)':<44}{b50:>9.2f}{b95:>9.2f}{b99:>9.2f}")
    print(f"{'ratio search / baseline':<44}{s50 / b50:>9.2f}{s95 / b95:>9.2f}{s99 / b99:>9.2f}")
    print("\np95 by query kind:")
    for kind, samples in sorted(by_kind.items()):
        p95 = percentiles(samples)[1] if len(samples) > 1 else samples[0]
        print(f"  {kind:<20}{p95:>8.2f} ms  ({len(samples)} requests)")
    ok = s95 <= TARGET_P95_MS
    print(f"\ntarget p95 <= {TARGET_P95_MS:.0f} ms: {'met' if ok else 'MISSED'} ({s95:.2f} ms)")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pharmacies", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rxroute-bench-") as tmp:
        url, admin = fresh_database(Path(tmp))
        try:
            migrate.upgrade(url)
            ok = asyncio.run(run(url, args.pharmacies, args.requests, args.seed))
        finally:
            drop_database(url, admin)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
