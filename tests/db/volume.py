"""Synthetic volume for query-plan tests and the list benchmark, written by SQL in one go.

``load(conn, prescriptions=N, events_per=K)`` adds N prescriptions (N / 2 patients, 50
prescribers, 100 pharmacies) and K history rows each, all with ``INSERT ... SELECT
generate_series`` (100,000 prescriptions and 1,000,000 history rows take seconds, where the
ORM would take minutes), then runs VACUUM ANALYZE. Ids are ``md5(kind || n)::uuid``, so a test can
name patient 7 without a lookup (:func:`patient_id`).

The mix is a busy service's: half in flight on the platform (issued, signed, printed; a
third of those never heard from since issue), a quarter dispensed, a few per cent each of
expired, voided, emailed, draft and failed, and 1% queued or sending. Created over the last
year, newest first by n. All data synthetic: ``example.com`` emails, 999-range NHS numbers.

Patients' names follow British frequencies (:func:`patient_name`): a quarter of a hundred
common surnames take about 9% of patients (Smith alone 1.3%), the rest share some 1,200
rarer ones (about 35 patients each at 50,000), so a search by name meets a common surname,
a rare one, and fragments that match many. (Every patient used to be "Volume PatientN",
which made every name search a search over one pattern; "patient42" matched 2.2% of
patients by its digits alone. "smith" and the fragments in :data:`QUERIES` keep that case.)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from hashlib import md5
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Role, User
from rxroute.prescriber import service as prescriber_service
from rxroute.prescriptions import repository
from rxroute.prescriptions.history import history
from rxroute.runtime import Runtime
from rxroute.support import search as support_search
from rxroute.support.attention import needs_attention
from rxroute.webhooks.reconciliation import polling_channels, reconcile_candidates
from rxroute.webhooks.tasks import orphaned_sends

PRESCRIBERS = 50
PHARMACIES = 100

FIRST_NAMES = (
    "Oliver",
    "George",
    "Harry",
    "Jack",
    "Jacob",
    "Noah",
    "Charlie",
    "Muhammad",
    "Thomas",
    "Oscar",
    "William",
    "James",
    "Leo",
    "Alfie",
    "Henry",
    "Joshua",
    "Freddie",
    "Archie",
    "Ethan",
    "Isaac",
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Emily",
    "Sophia",
    "Grace",
    "Mia",
    "Poppy",
    "Ella",
    "Lily",
    "Evie",
    "Isabella",
    "Sophie",
    "Ivy",
    "Freya",
    "Harper",
    "Willow",
    "Florence",
    "Margaret",
    "Susan",
    "David",
    "John",
    "Peter",
    "Paul",
    "Mary",
    "Patricia",
    "Linda",
    "Barbara",
    "Elizabeth",
    "Priya",
    "Aisha",
    "Fatima",
    "Wei",
    "Chen",
    "Anna",
    "Jan",
    "Piotr",
    "Siobhan",
    "Declan",
)
#: (surname, share of patients): the commonest British surnames, about 9% in all.
COMMON_SURNAMES = (
    ("Smith", 0.0126),
    ("Jones", 0.0075),
    ("Williams", 0.006),
    ("Taylor", 0.005),
    ("Brown", 0.005),
    ("Davies", 0.0045),
    ("Evans", 0.0035),
    ("Wilson", 0.003),
    ("Thomas", 0.003),
    ("Johnson", 0.003),
    ("Roberts", 0.003),
    ("Robinson", 0.0025),
    ("Thompson", 0.0025),
    ("Wright", 0.0025),
    ("Walker", 0.0025),
    ("White", 0.0023),
    ("Edwards", 0.0023),
    ("Hughes", 0.0022),
    ("Green", 0.0022),
    ("Hall", 0.0022),
    ("Lewis", 0.0021),
    ("Harris", 0.0021),
    ("Clarke", 0.002),
    ("Patel", 0.002),
    ("Jackson", 0.002),
)
#: The rest: one of each joined to one of the other (Ashford, Kingsley, Thornbury, ...).
SURNAME_STARTS = (
    "Ash",
    "Brad",
    "Cal",
    "Dun",
    "Elm",
    "Fair",
    "Gold",
    "Hart",
    "Kings",
    "Lang",
    "Mar",
    "North",
    "Oak",
    "Pem",
    "Rad",
    "Stan",
    "Thorn",
    "Wake",
    "Whit",
    "York",
    "Ald",
    "Bram",
    "Chad",
    "Dray",
    "Ever",
    "Fen",
    "Gras",
    "Hol",
    "Lind",
    "Moss",
    "Ned",
    "Pres",
    "Ros",
    "Sel",
    "Tal",
    "Wes",
    "Win",
    "Bur",
    "Cran",
    "Red",
)
SURNAME_ENDS = (
    "ford",
    "ley",
    "ton",
    "wood",
    "field",
    "bury",
    "well",
    "by",
    "more",
    "stone",
    "worth",
    "ridge",
    "hurst",
    "shaw",
    "cliffe",
    "dale",
    "ham",
    "wick",
    "combe",
    "den",
    "brook",
    "gate",
    "low",
    "mere",
    "sett",
    "cote",
    "land",
    "burn",
    "thorpe",
    "hill",
)


def synthetic_id(kind: str, n: int) -> uuid.UUID:
    """The id :func:`load` gives the ``n``-th row of ``kind`` (patient, prescriber, ...)."""
    return uuid.UUID(md5(f"{kind}{n}".encode(), usedforsecurity=False).hexdigest())


def patient_id(n: int) -> uuid.UUID:
    return synthetic_id("patient", n)


def prescriber_id(n: int) -> uuid.UUID:
    return synthetic_id("prescriber", n)


def patient_email(n: int) -> str:
    return f"Volume.Patient{n}@Example.com"


def patient_name(n: int) -> tuple[str, str]:
    """(first, last) name of patient ``n``: the same on every load."""
    digest = md5(f"patient name {n}".encode(), usedforsecurity=False).digest()
    first = FIRST_NAMES[digest[0] % len(FIRST_NAMES)]
    roll = int.from_bytes(digest[1:4], "big") / 2**24
    for surname, share in COMMON_SURNAMES:
        if roll < share:
            return first, surname
        roll -= share
    return first, SURNAME_STARTS[digest[4] % len(SURNAME_STARTS)] + SURNAME_ENDS[
        digest[5] % len(SURNAME_ENDS)
    ]


def load(conn: Any, *, prescriptions: int, events_per: int) -> None:
    """Add the volume on a psycopg (sync) connection and commit."""
    patients = max(prescriptions // 2, 1)
    conn.execute(
        """
        INSERT INTO prescribers (id, full_name, email, registration_number, active)
        SELECT md5('prescriber' || n)::uuid, 'Volume Prescriber ' || n,
               'prescriber' || n || '@example.com', 'GMC' || (7000000 + n), true
        FROM generate_series(0, %(prescribers)s - 1) AS n
        """,
        {"prescribers": PRESCRIBERS},
    )
    conn.execute(
        """
        INSERT INTO pharmacies (id, name, address_line1, address_line2, town, postcode, region,
                                email, platform_contact_id, active)
        SELECT md5('pharmacy' || n)::uuid, 'Volume Pharmacy ' || n, n || ' High Street', '',
               'Leeds', 'LS1 ' || (mod(n, 9) + 1) || 'AB', 'B', NULL, 200000 + n, true
        FROM generate_series(0, %(pharmacies)s - 1) AS n
        """,
        {"pharmacies": PHARMACIES},
    )
    names = [patient_name(n) for n in range(patients)]
    conn.execute(
        """
        INSERT INTO patients (id, first_name, last_name, date_of_birth, gender, email, phone,
                              address_line1, address_line2, town, postcode, country, region,
                              nhs_number)
        SELECT md5('patient' || n)::uuid, first_name, last_name,
               DATE '1950-01-01' + mod(n, 20000), 'Other',
               'Volume.Patient' || n || '@Example.com',
               '+44 7700 900' || lpad(mod(n, 1000)::text, 3, '0'),
               '1 Test Street', '', 'Leeds', 'LS1 4AP', 'GB', 'B', NULL
        FROM unnest(%(first)s::text[], %(last)s::text[]) WITH ORDINALITY
             AS named (first_name, last_name, k),
             LATERAL (SELECT (k - 1)::int AS n) AS numbered
        """,
        {"first": [first for first, _ in names], "last": [last for _, last in names]},
    )
    conn.execute(
        """
        INSERT INTO prescriptions (id, patient_id, prescriber_id, status, region, channel,
                                   pharmacy_id, provider_prescription_id, notes,
                                   last_provider_update_at, first_queued_at, created_at,
                                   updated_at)
        SELECT md5('prescription' || n)::uuid,
               md5('patient' || mod(n, %(patients)s))::uuid,
               md5('prescriber' || mod(n, %(prescribers)s))::uuid,
               status,
               CASE WHEN status = 'emailed' THEN 'A' WHEN status = 'draft' THEN NULL
                    ELSE 'B' END,
               CASE WHEN status = 'emailed' THEN 'email' WHEN status = 'draft' THEN NULL
                    ELSE 'erx' END,
               CASE WHEN status = 'draft' THEN NULL
                    ELSE md5('pharmacy' || mod(n, %(pharmacies)s))::uuid END,
               CASE WHEN status IN ('issued', 'signed', 'printed', 'dispensed', 'expired',
                                    'voided')
                    THEN 'SRXV' || upper(lpad(to_hex(n), 11, '0')) END,
               '',
               CASE WHEN status IN ('issued', 'signed', 'printed') AND mod(n, 3) <> 0
                    THEN created + interval '1 hour' END,
               CASE WHEN status <> 'draft' THEN created + interval '1 minute' END,
               created, created + interval '10 minutes'
        FROM (
            SELECT n,
                   CASE
                       WHEN mod(n, 1000) < 500
                           THEN (ARRAY['issued', 'signed', 'printed'])[mod(n, 3) + 1]
                       WHEN mod(n, 1000) < 750 THEN 'dispensed'
                       WHEN mod(n, 1000) < 800 THEN 'expired'
                       WHEN mod(n, 1000) < 850 THEN 'voided'
                       WHEN mod(n, 1000) < 900 THEN 'emailed'
                       WHEN mod(n, 1000) < 950 THEN 'draft'
                       WHEN mod(n, 1000) < 990 THEN 'failed'
                       ELSE (ARRAY['queued', 'sending'])[mod(n, 2) + 1]
                   END AS status,
                   now() - (n * (interval '365 days' / %(prescriptions)s)) AS created
            FROM generate_series(0, %(prescriptions)s - 1) AS n
        ) AS generated
        """,
        {
            "patients": patients,
            "prescriptions": prescriptions,
            "prescribers": PRESCRIBERS,
            "pharmacies": PHARMACIES,
        },
    )
    conn.execute(
        """
        INSERT INTO prescription_status_events (id, prescription_id, status, source,
                                                occurred_at, recorded_at)
        SELECT gen_random_uuid(), p.id,
               (ARRAY['draft', 'queued', 'sending', 'issued', 'signed'])[mod(k, 5) + 1],
               'system', p.created_at + k * interval '1 minute',
               p.created_at + k * interval '1 minute'
        FROM prescriptions AS p, generate_series(0, %(events)s - 1) AS k
        """,
        {"events": events_per},
    )
    conn.commit()
    # VACUUM, not only ANALYZE: a GIN index keeps fresh rows in a pending list that only
    # VACUUM (or autovacuum) merges, and PostgreSQL will not use a trigram index whose whole
    # content is pending. A table that took a year to fill has been vacuumed many times.
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        for table in (
            "prescribers",
            "pharmacies",
            "patients",
            "prescriptions",
            "prescription_status_events",
        ):
            conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        conn.autocommit = autocommit


# --- the lists and searches, called as the app calls them --------------------

Query = Callable[[AsyncSession, Runtime], Awaitable[object]]


def patient_user() -> User:
    return User(role=Role.PATIENT.value, patient_id=patient_id(7), email="p@example.com")


def prescriber_user() -> User:
    return User(role=Role.PRESCRIBER.value, prescriber_id=prescriber_id(3), email="d@example.com")


def support_user() -> User:
    return User(role=Role.SUPPORT.value, email="s@example.com")


async def reconcile(session: AsyncSession, runtime: Runtime) -> object:
    quiet_since = datetime.now(UTC) - timedelta(seconds=runtime.settings.reconcile_after_seconds)
    return list(await session.scalars(reconcile_candidates(polling_channels(runtime), quiet_since)))


async def orphans(session: AsyncSession, runtime: Runtime) -> object:
    return list(await session.scalars(orphaned_sends(datetime.now(UTC) - timedelta(minutes=5))))


def support_find(**form: str) -> Query:
    """Support's search with these form fields, parsed and run as the console runs it."""

    async def query(session: AsyncSession, runtime: Runtime) -> object:
        criteria, errors = support_search.parse_criteria(form)
        assert not errors, errors
        return await support_search.run(session, criteria, runtime.settings)

    return query


QUERIES: dict[str, Query] = {
    "patient list (API)": lambda s, r: repository.list_visible(s, patient_user()),
    "patient list (page)": lambda s, r: repository.list_visible(s, patient_user(), limit=200),
    "patient's prescription and timeline": lambda s, r: history(s, synthetic_id("prescription", 5)),
    "prescriber list": lambda s, r: prescriber_service.written_by(s, prescriber_user()),
    "support list": lambda s, r: repository.list_visible(s, support_user()),
    "support list, a later page": lambda s, r: repository.list_visible(
        s, support_user(), offset=200
    ),
    "support search by email": lambda s, r: support_search.search(s, patient_email(42)),
    "support search by id": lambda s, r: support_search.search(
        s, str(synthetic_id("prescription", 11))
    ),
    "support search by platform id": lambda s, r: support_search.search(s, "SRXV0000000000A"),
    "support search by partial id": support_find(q=str(synthetic_id("prescription", 11))[:8]),
    "support search by name": support_find(name=" ".join(patient_name(42))),
    "support search by surname": support_find(name=patient_name(42)[1]),
    "support search by a common surname (1.3%)": support_find(name="smith"),
    "support search by part of a name (2.7%)": support_find(name="ash"),
    "support search by part of a name (7.9%)": support_find(name="har"),
    "support search by date of birth": support_find(dob="1950-02-12"),
    "support search by name and date of birth": support_find(
        name=patient_name(42)[1], dob="1950-02-12"
    ),
    "support search by a common surname and date of birth": support_find(
        name="smith", dob="1950-02-12"
    ),
    "support search by pharmacy": support_find(pharmacy="volume pharmacy 7"),
    "support search by status": support_find(status="failed"),
    "support search by date range": support_find(
        created_from=(datetime.now(UTC) - timedelta(days=30)).date().isoformat(),
        created_to=(datetime.now(UTC) - timedelta(days=20)).date().isoformat(),
    ),
    "support search by status and pharmacy": support_find(
        status="dispensed", pharmacy="volume pharmacy 42"
    ),
    "support console needs attention": lambda s, r: needs_attention(s, r.settings),
    "prescriber patient search by email": lambda s, r: prescriber_service.search_patients(
        s, patient_email(42)
    ),
    "reconciliation candidates": reconcile,
    "orphaned sends": orphans,
}
