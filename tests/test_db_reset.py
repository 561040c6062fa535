"""The reset between tests empties what ``TRUNCATE ... CASCADE`` emptied, and stays small.

``tests/db_reset.py`` deletes rows instead of truncating (about 3 ms a test instead of 130):
these tests hold it to the truncation's result.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from rxroute.prescriptions.lifecycle import Source
from rxroute.runtime import Runtime
from tests import db_reset, factories


def test_it_empties_exactly_the_tables_truncate_cascade_emptied(database_url: str) -> None:
    notices: list[str] = []
    with psycopg.connect(database_url) as connection:
        connection.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        connection.execute(f"TRUNCATE {', '.join(db_reset.TABLES)} CASCADE")
        connection.rollback()
        emptied = set(db_reset.emptied_tables(connection))
    cascaded = {
        message.removeprefix("truncate cascades to table ").strip('"') for message in notices
    }
    assert cascaded, "expected TRUNCATE to cascade to at least one table"
    assert emptied == set(db_reset.TABLES) | cascaded


async def test_rows_go_sequences_restart_and_append_only_tables_are_emptied(
    db: Runtime, database_url: str
) -> None:
    async with db.sessionmaker() as session:
        patient = await factories.make_patient(session)
        prescriber = await factories.make_prescriber(session, db.secret_box)
        pharmacy = await factories.make_pharmacy(session, "B")
        prescription = await factories.make_prescription(
            session, patient, prescriber, region="B", channel="erx", pharmacy_id=pharmacy.id
        )
        await factories.queue_delivery(session, prescription.id, source=Source.PATIENT, actor=None)
        await session.commit()
    with psycopg.connect(database_url, autocommit=True) as connection:
        before = connection.execute("SELECT count(*) FROM prescription_status_events").fetchone()
        assert before is not None and before[0] > 0
        connection.execute(db_reset.RESET)
        for table in db_reset.emptied_tables(connection):
            count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            row = connection.execute(count).fetchone()
            assert row == (0,), f"{table} still has rows"
        sequence = connection.execute(
            "SELECT pg_get_serial_sequence('prescription_status_events', 'seq')"
        ).fetchone()
        assert sequence is not None
        assert connection.execute("SELECT nextval(%s)", sequence).fetchone() == (1,)
        connection.execute(db_reset.RESET)


async def test_it_truncates_once_the_deleted_rows_pass_the_bound(
    db: Runtime, database_url: str
) -> None:
    counter = "UPDATE rxroute_tests.deleted_since_truncate SET row_count = %s"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(counter, (db_reset.TRUNCATE_AFTER_ROWS - 1,))
        assert connection.execute(db_reset.RESET).fetchone() == ("deleted",)
    async with db.sessionmaker() as session:
        await factories.make_clinic(session)
        await session.commit()
    with psycopg.connect(database_url, autocommit=True) as connection:
        assert connection.execute(db_reset.RESET).fetchone() == ("truncated",)
        left = connection.execute("SELECT row_count FROM rxroute_tests.deleted_since_truncate")
        assert left.fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM clinics").fetchone() == (0,)


async def test_asked_to_truncate_it_truncates_at_once(db: Runtime, database_url: str) -> None:
    async with db.sessionmaker() as session:
        await factories.make_clinic(session)
        await session.commit()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("UPDATE rxroute_tests.deleted_since_truncate SET row_count = 5")
        assert connection.execute(db_reset.TRUNCATE).fetchone() == ("truncated",)
        left = connection.execute("SELECT row_count FROM rxroute_tests.deleted_since_truncate")
        assert left.fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM clinics").fetchone() == (0,)
