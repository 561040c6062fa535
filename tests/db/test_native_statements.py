"""Statements run with PostgreSQL's own placeholders (rxroute.db.queue_statements).

psycopg re-parses its named placeholders on every execution of a statement longer than
4,096 characters; the send's record with the next job's load is one. A
:class:`NativeStatement` turns them into ``$n`` once and runs on psycopg's raw cursor: the
same values reach the server as through psycopg's own conversion.
"""

from __future__ import annotations

import uuid

import pytest

from rxroute.db.queue_statements import NativeStatement, single_statements
from rxroute.runtime import Runtime


def test_each_name_becomes_one_number_in_order_of_first_use() -> None:
    statement = NativeStatement.of("SELECT %(b)s, %(a)s, %(b)s::text")
    assert statement.text == "SELECT $1, $2, $1::text"
    assert statement.names == ("b", "a")


@pytest.mark.parametrize("text", ["SELECT 'x%' LIKE %(a)s", "SELECT %s", "SELECT %%"])
def test_any_other_percent_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="no other %"):
        NativeStatement.of(text)


async def test_it_runs_with_values_by_name_as_psycopg_would(db: Runtime) -> None:
    long_tail = " ".join(f"AND {n} = {n}" for n in range(800))  # over psycopg's 4,096
    head = "SELECT %(id)s::uuid, %(n)s + 1, %(text)s, CAST(%(ids)s AS uuid[]) WHERE true"
    statement = NativeStatement.of(f"{head} {long_tail}")
    assert len(statement.text) > 4096
    some_id = uuid.uuid4()
    values = {"id": some_id, "n": 41, "text": "café", "ids": [some_id], "unused": object()}
    async with single_statements(db.queue_pool) as connection:
        for _time in range(6):  # past psycopg's prepare threshold: prepared runs alike
            row = await (await statement.execute(connection, values)).fetchone()
            assert row == (some_id, 42, "café", [some_id])
        with pytest.raises(KeyError, match="text"):
            await statement.execute(connection, {"id": some_id, "n": 1, "ids": []})
