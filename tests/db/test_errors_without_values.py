"""A failing statement's error text holds no bound value and no row the server quotes back.

Tracebacks reach the logs through uvicorn and procrastinate; the values in them would be
patient details. Every engine rxroute creates hides them (``hide_parameters``) and cuts the
server's DETAIL out (:func:`rxroute.db.engine.keep_values_out_of_errors`).
"""

from __future__ import annotations

import traceback
import uuid

import psycopg
import pytest
from sqlalchemy import create_engine as sync_create_engine
from sqlalchemy import pool, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.db.engine import outage_reason, sqlalchemy_url
from rxroute.models import Patient
from rxroute.runtime import Runtime

SECRET_EMAIL = "jane.secret-doe@example.com"
SECRET_NAME = "Zebedee-Quartermaine"


def _everything_printed(error: BaseException) -> str:
    """What a logged traceback would show: the error and its whole chain."""
    return "".join(traceback.format_exception(error))


async def test_a_duplicate_keeps_the_email_out_of_the_error(db: Runtime) -> None:
    with pytest.raises(IntegrityError) as caught:
        async with db.sessionmaker() as other, other.begin():
            await other.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, role, active) VALUES "
                    "(:id, :email, 'x', 'patient', true), (:id2, :email, 'x', 'patient', true)"
                ),
                {"id": uuid.uuid4(), "id2": uuid.uuid4(), "email": SECRET_EMAIL},
            )
    printed = _everything_printed(caught.value)
    assert SECRET_EMAIL not in printed
    assert "hide_parameters" in printed  # SQLAlchemy says the parameters were hidden
    assert "Key (" not in printed and "DETAIL" not in printed
    # What is left still finds the bug: the constraint and the table are named.
    assert "23505" in printed and "users" in printed
    # The full diagnostics stay on the exception for code that needs them.
    assert isinstance(caught.value.orig, psycopg.Error)
    assert SECRET_EMAIL in (caught.value.orig.diag.message_detail or "")


async def test_a_failing_row_is_not_quoted(db: Runtime) -> None:
    """A NOT NULL violation's DETAIL quotes the whole row ("Failing row contains ...")."""
    with pytest.raises(IntegrityError) as caught:
        async with db.sessionmaker() as other, other.begin():
            await other.execute(
                text(
                    "INSERT INTO patients (id, first_name, last_name, email) "
                    "VALUES (:id, :first, :last, NULL)"
                ),
                {"id": uuid.uuid4(), "first": SECRET_NAME, "last": SECRET_NAME},
            )
    printed = _everything_printed(caught.value)
    assert SECRET_NAME not in printed
    assert "Failing row" not in printed


async def test_a_data_error_masks_the_value_it_quotes(db: Runtime) -> None:
    with pytest.raises(DBAPIError) as caught:
        async with db.sessionmaker() as other, other.begin():
            await other.execute(text("SELECT CAST(:value AS uuid)"), {"value": SECRET_EMAIL})
    printed = _everything_printed(caught.value)
    assert SECRET_EMAIL not in printed
    assert 'invalid input syntax for type uuid: "<value>"' in printed


async def test_orm_flush_errors_hide_the_values_too(session: AsyncSession) -> None:
    """The ORM's INSERT of a patient missing required fields: names and email stay out."""
    session.add(Patient(first_name=SECRET_NAME, last_name=SECRET_NAME, email=SECRET_EMAIL))
    with pytest.raises(IntegrityError) as caught:
        await session.flush()
    await session.rollback()
    printed = _everything_printed(caught.value)
    assert SECRET_NAME not in printed and SECRET_EMAIL not in printed


def test_engines_made_elsewhere_get_the_same_guard(database_url: str) -> None:
    """Alembic's engine (migrations, ``rxroute migrate``) goes through the same function."""
    from rxroute.db.engine import keep_values_out_of_errors

    engine = sync_create_engine(
        sqlalchemy_url(database_url), poolclass=pool.NullPool, hide_parameters=True
    )
    keep_values_out_of_errors(engine)
    keep_values_out_of_errors(engine)  # idempotent: one listener
    try:
        with pytest.raises(DBAPIError) as caught, engine.connect() as connection:
            connection.execute(text("SELECT CAST(:value AS integer)"), {"value": SECRET_NAME})
    finally:
        engine.dispose()
    assert SECRET_NAME not in _everything_printed(caught.value)


async def test_outages_are_still_recognised(db: Runtime) -> None:
    """The rewrite keeps the SQLSTATE the outage rule reads (57P01: terminated)."""
    async with db.engine.connect() as victim, db.engine.connect() as killer:
        pid = await victim.scalar(text("SELECT pg_backend_pid()"))
        await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as caught:
            await victim.execute(text("SELECT 1"))
    assert outage_reason(caught.value) is not None
