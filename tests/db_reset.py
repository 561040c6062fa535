"""Emptying the test database between tests: deleting the few rows a test left, not truncating.

Every test that takes the ``db`` fixture starts from empty tables. ``TRUNCATE`` gave that, but
it replaces the storage of every table, index and TOAST table it empties (about a hundred
files) and makes the commit wait for them: 100 to 130 ms a test whatever the test wrote, more
than most tests run. A test leaves a few dozen rows, and deleting them takes about 3 ms.

So :func:`install` puts one function into the test database, ``rxroute_tests.reset()``, which
empties exactly what the ``TRUNCATE ... CASCADE`` did (:data:`TABLES` and every table whose
foreign keys lead to one of them):

- it deletes every row, with ``session_replication_role = replica`` for the one transaction,
  so that neither the foreign keys between the tables (some point both ways) nor the
  append-only triggers stand in the way, as they did not for ``TRUNCATE`` (setting it needs
  a superuser: the tests' role is one, on CI's server and on the embedded one);
- it restarts their sequences, as ``RESTART IDENTITY`` did;
- it falls back to ``TRUNCATE`` once the rows deleted since the last one pass
  :data:`TRUNCATE_AFTER_ROWS`. Deleted rows stay in the tables until a vacuum, which a test
  server may never run (CI's has autovacuum off), so without the fallback the tables would
  keep growing over a session. It truncates at once when asked (:data:`TRUNCATE`), after a
  test that loaded more rows than deleting them is worth.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

TABLES = (
    "patient_notifications",
    "idempotency_keys",
    "formulary_items",
    "invitations",
    "api_clients",
    "event_deliveries",
    "outbox_events",
    "event_endpoints",
    "prescription_status_events",
    "delivery_attempts",
    "inbound_webhook_events",
    "prescription_items",
    "prescriptions",
    "users",
    "patients",
    "pharmacies",
    "prescribers",
    "clinics",
    "procrastinate_jobs",
    "procrastinate_events",
    "procrastinate_periodic_defers",
)

#: About a tenth of a second of deleting, and the dead rows of a few hundred ordinary tests.
TRUNCATE_AFTER_ROWS = 20_000

RESET = "SELECT rxroute_tests.reset()"
#: The same, truncating at once: after a test that loaded more rows than deleting is worth.
TRUNCATE = "SELECT rxroute_tests.reset(truncate_now => true)"

_EMPTIED = """
WITH RECURSIVE emptied(table_oid) AS (
    SELECT unnest(%(tables)s::regclass[])::oid
    UNION
    SELECT constraint_.conrelid
    FROM pg_constraint AS constraint_
    JOIN emptied ON constraint_.confrelid = emptied.table_oid
    WHERE constraint_.contype = 'f'
)
SELECT table_oid::regclass::text FROM emptied ORDER BY 1
"""

_SEQUENCES = """
SELECT pg_get_serial_sequence(attrelid::regclass::text, attname)
FROM pg_attribute
WHERE attrelid = ANY(%(tables)s::regclass[]) AND attnum > 0 AND NOT attisdropped
  AND pg_get_serial_sequence(attrelid::regclass::text, attname) IS NOT NULL
ORDER BY 1
"""

#: Composed with :mod:`psycopg.sql` (``{...}`` are its fields), not bound: a function body
#: cannot take parameters.
_FUNCTION = """
CREATE SCHEMA rxroute_tests;
CREATE TABLE rxroute_tests.deleted_since_truncate (row_count bigint NOT NULL);
INSERT INTO rxroute_tests.deleted_since_truncate VALUES (0);
CREATE FUNCTION rxroute_tests.reset(truncate_now boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql AS $reset$
DECLARE
    tables text[] := {tables};
    sequences text[] := {sequences};
    name text;
    deleted bigint;
    owed bigint := 0;
BEGIN
    IF NOT truncate_now THEN
        PERFORM set_config('session_replication_role', 'replica', true);
        FOREACH name IN ARRAY tables LOOP
            EXECUTE format('DELETE FROM %s', name);
            GET DIAGNOSTICS deleted = ROW_COUNT;
            owed := owed + deleted;
        END LOOP;
        FOREACH name IN ARRAY sequences LOOP
            PERFORM setval(name, 1, false);
        END LOOP;
        UPDATE rxroute_tests.deleted_since_truncate SET row_count = row_count + owed
        RETURNING row_count INTO owed;
        IF owed < {threshold} THEN
            RETURN 'deleted';
        END IF;
    END IF;
    EXECUTE format('TRUNCATE %s RESTART IDENTITY', array_to_string(tables, ', '));
    UPDATE rxroute_tests.deleted_since_truncate SET row_count = 0;
    RETURN 'truncated';
END
$reset$;
"""


def emptied_tables(connection: psycopg.Connection[Any]) -> list[str]:
    """:data:`TABLES` and every table whose foreign keys lead to one of them."""
    return [row[0] for row in connection.execute(_EMPTIED, {"tables": list(TABLES)})]


def install(database_url: str) -> None:
    """Create ``rxroute_tests.reset()`` in a migrated test database."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        emptied = emptied_tables(connection)
        sequences = [row[0] for row in connection.execute(_SEQUENCES, {"tables": emptied})]
        with connection.transaction():
            connection.execute(
                sql.SQL(_FUNCTION).format(
                    tables=sql.Literal(emptied),
                    sequences=sql.Literal(sequences),
                    threshold=sql.Literal(TRUNCATE_AFTER_ROWS),
                )
            )
