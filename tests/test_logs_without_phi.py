"""Request paths and tracebacks reach the logs without anything a patient typed or owns."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from structlog.testing import capture_logs

from rxroute.config import Settings
from rxroute.runtime import Runtime

EMAIL = "jane.doe@example.com"
#: What a masked path segment is logged as (rxroute.logging.MASKED).
MASKED = "<masked>"


@pytest.fixture(scope="module")
def words(settings: Settings) -> frozenset[str]:
    from rxroute.app import create_app, route_paths
    from rxroute.logging import route_words

    return route_words(route_paths(create_app(settings)))


def test_every_route_is_logged_whole_with_its_ids(
    settings: Settings, words: frozenset[str]
) -> None:
    """Masking costs no information on the app's own URLs: each comes out as it went in."""
    from rxroute.app import create_app, route_paths
    from rxroute.logging import SECRET_PATH_PREFIXES, loggable_path

    for path in route_paths(create_app(settings)):
        if not path or path.startswith(SECRET_PATH_PREFIXES):
            continue  # bearer tokens: masked whole (see the next test)
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        assert loggable_path(concrete, words) == concrete, path


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"/prescriptions/{EMAIL}", f"/prescriptions/{MASKED}"),
        (f"/support/prescriptions/{EMAIL}/void", f"/support/prescriptions/{MASKED}/void"),
        ("/support/Jane Doe 1985-03-07", f"/support/{MASKED}"),
        (f"/api/v1/prescriptions/{EMAIL}", f"/api/v1/prescriptions/{MASKED}"),
        ("/admin/pharmacies/12345", "/admin/pharmacies/12345"),
        ("/static/app.css", "/static/app.css"),
        (f"/static/{EMAIL}", f"/static/{MASKED}"),
        ("/pharmacy/confirm/abc.def.ghi", "/pharmacy/confirm/<token>"),
        ("/pharmacy/confirm/abc/def", "/pharmacy/confirm/<token>"),
        ("/notifications/unsubscribe/abc.def.ghi", "/notifications/unsubscribe/<token>"),
        ("/", "/"),
    ],
)
def test_typed_text_in_a_path_is_masked(path: str, logged: str, words: frozenset[str]) -> None:
    from rxroute.logging import loggable_path

    assert loggable_path(path, words) == logged


@pytest.fixture
def request_logs() -> Iterator[list[dict[str, object]]]:
    with capture_logs() as logs:
        yield logs


async def test_the_request_log_has_neither_typed_paths_nor_query_strings(
    client: httpx.AsyncClient, db: Runtime, request_logs: list[dict[str, object]]
) -> None:
    await client.get(f"/prescriptions/{EMAIL}")
    await client.get("/admin/pharmacies", params={"q": EMAIL})
    await client.get(f"/nowhere/{EMAIL}")
    lines = [entry for entry in request_logs if entry.get("event") == "request"]
    assert len(lines) == 3
    assert EMAIL not in json.dumps(request_logs, default=str)
    assert [line["path"] for line in lines] == [
        f"/prescriptions/{MASKED}",
        "/admin/pharmacies",
        f"/{MASKED}/{MASKED}",  # not a route of ours: nothing of it is kept
    ]


def test_a_logged_database_traceback_loses_its_detail_lines(database_url: str) -> None:
    """An error from a connection rxroute did not make (procrastinate's, say) still quotes
    the row; the one formatter every log line goes through cuts those lines out."""
    from rxroute.logging import log_formatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter(json=True))
    logger = logging.getLogger("tests.phi")
    logger.handlers = [handler]
    logger.propagate = False
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE TEMP TABLE people (email text UNIQUE)")
        connection.execute("INSERT INTO people VALUES (%s)", [EMAIL])
        try:
            connection.execute("INSERT INTO people VALUES (%s)", [EMAIL])
        except psycopg.errors.UniqueViolation as exc:
            assert EMAIL in str(exc)  # the raw error does quote it
            logger.exception("job failed")
    line = json.loads(stream.getvalue())
    assert "UniqueViolation" in line["exception"]
    assert EMAIL not in stream.getvalue()
    assert "[database detail redacted]" in line["exception"]
