"""The lists and searches read indexes, not whole tables, at volume.

40,000 prescriptions (120,000 history rows, 20,000 patients) are loaded by SQL and analysed;
then each list or search is run the way the app runs it (the real function, with a real
user), every statement it sends is captured from the engine with its parameters, and
PostgreSQL's plan for exactly that statement is checked: no sequential scan of
prescriptions, patients or the status history. A missing index (see migration 0013) shows
up here as a named query and its plan. The figures at 100,000 / 1,000,000 are in
``bench/bench_lists.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.prescriptions import repository
from rxroute.runtime import Runtime
from rxroute.support import search as support_search
from tests import db_reset
from tests.db import volume
from tests.db.volume import QUERIES, Query, patient_user, reconcile

PRESCRIPTIONS = 40_000
EVENTS_PER = 3
WATCHED = frozenset({"prescriptions", "patients", "prescription_status_events"})


async def _truncate(runtime: Runtime) -> None:
    async with runtime.engine.begin() as connection:
        await connection.execute(text(db_reset.TRUNCATE))


@pytest.fixture(scope="module")
async def loaded(runtime: Runtime, database_url: str) -> AsyncIterator[Runtime]:
    """The volume, loaded once for this module and removed after it."""
    await _truncate(runtime)
    with psycopg.connect(database_url) as conn:
        volume.load(conn, prescriptions=PRESCRIPTIONS, events_per=EVENTS_PER)
    yield runtime
    await _truncate(runtime)


@contextmanager
def _captured(runtime: Runtime) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((statement, parameters))

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", record)


@asynccontextmanager
async def _session(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    async with runtime.sessionmaker() as session:
        yield session


def _seq_scans(plan: dict[str, Any]) -> list[str]:
    """Watched tables read by a sequential scan anywhere in the plan (subplans included)."""
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in WATCHED:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found.extend(_seq_scans(child))
    return found


async def _plans(
    session: AsyncSession, statements: list[tuple[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Each SELECT's plan, with the SETs the app sent before it replayed in order (the
    search's ``SET LOCAL``: a plan for these values, no sort)."""
    connection = await session.connection()
    plans = []
    for statement, parameters in statements:
        if statement.lstrip().upper().startswith("SET"):
            await connection.exec_driver_sql(statement, parameters)
        if not statement.lstrip().upper().startswith("SELECT"):
            continue
        result = await connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
        document = result.scalar_one()
        document = json.loads(document) if isinstance(document, str) else document
        plans.append((statement, document[0]["Plan"]))
    return plans


async def _offences(runtime: Runtime, query: Query) -> tuple[int, list[str]]:
    """(statements checked, a line per statement that scans a watched table)."""
    async with _session(runtime) as session:
        with _captured(runtime) as statements:
            await query(session, runtime)
        plans = await _plans(session, statements)
    offences = [
        f"{', '.join(scans)} scanned by:\n{statement}\nplan: {json.dumps(plan)[:2000]}"
        for statement, plan in plans
        if (scans := _seq_scans(plan))
    ]
    return len(plans), offences


@pytest.mark.parametrize("name", list(QUERIES))
async def test_no_sequential_scan(loaded: Runtime, name: str) -> None:
    checked, offences = await _offences(loaded, QUERIES[name])
    assert checked >= 1, f"{name}: no SELECT captured"
    assert offences == [], f"{name}: " + "\n\n".join(offences)


async def test_the_check_notices_a_sequential_scan(loaded: Runtime) -> None:
    """With index scans disabled the same query is reported: the check above can fail."""

    async def without_indexes(session: AsyncSession, runtime: Runtime) -> object:
        await session.execute(text("SET LOCAL enable_indexscan = off"))
        await session.execute(text("SET LOCAL enable_bitmapscan = off"))
        await session.execute(text("SET LOCAL enable_indexonlyscan = off"))
        return await repository.list_visible(session, patient_user())

    async with _session(loaded) as session:
        with _captured(loaded) as statements:
            await without_indexes(session, loaded)
        plans = await _plans(session, statements)
    assert any("prescriptions" in _seq_scans(plan) for _, plan in plans)


async def test_the_volume_is_there(loaded: Runtime) -> None:
    """The plans above are for a loaded table, and the queries find what they should."""
    async with _session(loaded) as session:
        counted = await session.scalar(text("SELECT count(*) FROM prescriptions"))
        mine = await repository.list_visible(session, patient_user(), limit=200)
        found = await support_search.search(session, volume.patient_email(42).upper())
        candidates = await reconcile(session, loaded)
        by_prefix = await support_search.search(
            session, str(volume.synthetic_id("prescription", 11))[:8]
        )
        by_name_and_birth = await volume.support_find(
            name=" ".join(volume.patient_name(42)), dob="1950-02-12"
        )(session, loaded)
        by_common_name = await volume.support_find(name="smith")(session, loaded)
    assert counted == PRESCRIPTIONS
    assert len(mine) == 2
    assert {p.patient_id for p in mine} == {volume.patient_id(7)}
    assert [p.created_at for p in mine] == sorted((p.created_at for p in mine), reverse=True)
    assert found.kind == "email" and found.prescriptions
    assert {p.patient_id for p in found.prescriptions} == {volume.patient_id(42)}
    assert isinstance(candidates, list) and len(candidates) == 200
    assert volume.synthetic_id("prescription", 11) in {p.id for p in by_prefix.prescriptions}
    assert isinstance(by_name_and_birth, support_search.SearchResult)
    assert by_name_and_birth.prescriptions
    assert {p.patient_id for p in by_name_and_birth.prescriptions} == {volume.patient_id(42)}
    # "smith" is over 1% of patients: a full page, newest first, every one a Smith.
    assert by_common_name.more and len(by_common_name.prescriptions) == 50
    assert all(p.patient.last_name == "Smith" for p in by_common_name.prescriptions)
    created = [p.created_at for p in by_common_name.prescriptions]
    assert created == sorted(created, reverse=True)


async def _walked(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fields: dict[str, str], limit: int
) -> tuple[list[object], list[object], list[tuple[str, Any]]]:
    """The page by ids, then with ``PATIENT_IDS`` lowered to ``limit``: by the walk."""
    common = volume.support_find(**fields)
    async with _session(runtime) as session:
        by_ids = await common(session, runtime)
    monkeypatch.setattr(support_search, "PATIENT_IDS", limit)
    async with _session(runtime) as session:
        with _captured(runtime) as statements:
            by_walk = await common(session, runtime)
    assert isinstance(by_ids, support_search.SearchResult)
    assert isinstance(by_walk, support_search.SearchResult)
    assert by_ids.prescriptions
    assert not any("ANY" in statement for statement, _ in statements)
    assert any("prescriptions.patient_name_search LIKE" in s for s, _ in statements)
    return [p.id for p in by_ids.prescriptions], [p.id for p in by_walk.prescriptions], statements


async def test_more_patients_than_passed_by_id_give_the_same_page(
    loaded: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``PATIENT_IDS`` matching patients the search walks prescriptions newest first,
    checking each one's copy of its patient's name (migration 0019): the same newest page,
    still off the indexes (the volume has too few patients to get there with the real
    limit, so it is lowered)."""
    by_ids, by_walk, statements = await _walked(loaded, monkeypatch, {"name": "smith"}, 10)
    assert by_walk == by_ids
    # The walk is forced (no sort) for the search alone, then the setting is put back.
    sets = [s for s, _ in statements if "enable_sort" in s]
    assert sets == ["SET LOCAL enable_sort = off", "SET LOCAL enable_sort TO DEFAULT"]
    async with _session(loaded) as session:
        plans = await _plans(session, statements)
    assert any("prescriptions" in statement for statement, _ in plans)
    assert all("prescriptions" not in _seq_scans(plan) for _, plan in plans)


async def test_the_walk_checks_the_other_patient_fields_too(
    loaded: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with a date of birth, walked: the date of birth still narrows the page."""
    async with _session(loaded) as session:
        born = await session.scalar(
            text("SELECT date_of_birth FROM patients WHERE last_name = 'Smith' LIMIT 1")
        )
    fields = {"name": "smith", "dob": born.isoformat()}
    by_ids, by_walk, _statements = await _walked(loaded, monkeypatch, fields, 0)
    assert by_walk == by_ids


async def test_a_common_name_beside_another_filter_leaves_the_plan_to_postgresql(
    loaded: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forcing the walk beside a status could walk every prescription: not forced."""
    monkeypatch.setattr(support_search, "PATIENT_IDS", 10)
    async with _session(loaded) as session:
        with _captured(loaded) as statements:
            found = await volume.support_find(name="smith", status="failed")(session, loaded)
        sort = await session.scalar(text("SHOW enable_sort"))
    assert isinstance(found, support_search.SearchResult)
    assert all(p.status == "failed" for p in found.prescriptions)
    assert any("prescriptions.patient_name_search LIKE" in s for s, _ in statements)
    assert not any("enable_sort" in s for s, _ in statements)
    assert sort == "on"
