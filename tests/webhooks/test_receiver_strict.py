"""``POST /webhooks/erx`` with correctly signed bodies the database could not store, and with
signature headers that are not exactly what the platform sends.

A 500 here is the worst answer: the sender retries the same poison body for as long as its
retry policy lasts. Each case must be a 4xx with a JSON reason and leave nothing stored.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from rxroute.app import create_app
from rxroute.config import Settings
from rxroute.models import InboundWebhookEvent
from rxroute.runtime import Runtime
from tests.webhooks.helpers import (
    job_count,
    refusals,
    served,
    signed_headers,
    stored_event_count,
)

URL = "/webhooks/erx"
MARKER = "SRXPOISON0001"


@pytest.fixture
def secret(settings: Settings) -> str:
    return settings.webhook_secret.get_secret_value()


def _raw(data: str = '{"status":"dispensed"}', *, event_id: str | None = None) -> bytes:
    """A contract-shaped event whose ``data`` (and optionally id) is written as raw JSON text."""
    identifier = event_id if event_id is not None else f'"evt_{uuid.uuid4().hex}"'
    return (
        f'{{"id":{identifier},"event":"prescription.status_changed",'
        f'"created_at":"2030-01-01T00:00:00Z","data":{{"prescription_id":"{MARKER}",'
        f'"extra":{data}}}}}'
    ).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


POISON: dict[str, tuple[bytes, str]] = {
    "NaN": (_raw("NaN"), "not_json"),
    "Infinity": (_raw("Infinity"), "not_json"),
    "-Infinity": (_raw("-Infinity"), "not_json"),
    "NaN inside a list": (_raw("[1, NaN]"), "not_json"),
    "1e999": (_raw("1e999"), "unstorable"),
    "-1e999": (_raw("-1e999"), "unstorable"),
    "1E400 with a fraction": (_raw("1.5E400"), "unstorable"),
    "integer of 4,301 digits": (_raw("9" * 4301), "unstorable"),
    "negative integer of 4,301 digits": (_raw("-" + "9" * 4301), "unstorable"),
    "integer of 20,000 digits": (_raw("1" * 20_000), "unstorable"),
    "lone high surrogate in a value": (_raw('"a\\ud800b"'), "unstorable"),
    "lone low surrogate in a value": (_raw('"\\udc00"'), "unstorable"),
    "surrogates in the wrong order": (_raw('"\\udc00\\ud800"'), "unstorable"),
    "lone surrogate in a key": (_raw('{"\\ud800": 1}'), "unstorable"),
    "lone surrogate in a top-level key": (
        b'{"id":"evt_k","event":"prescription.status_changed","\\ud800":1}',
        "unstorable",
    ),
    "lone surrogate in the event id": (_raw(event_id='"evt_\\ud800"'), "unstorable"),
    "lone surrogate in the event type": (
        b'{"id":"evt_t","event":"prescription.\\ud800","data":{}}',
        "unstorable",
    ),
    "NUL in a key": (_raw('{"a\\u0000": 1}'), "unstorable"),
    "NUL in the event id": (_raw(event_id='"evt_\\u0000"'), "unstorable"),
    # The event's ``data.extra`` is at depth 3: 30 lists there reach MAX_DEPTH (32).
    "nested one level past the limit": (_raw(_nested(31)), "unstorable"),
    "nested 900 levels": (_raw(_nested(900)), "unstorable"),
    "UTF-16 body": (_raw().decode().encode("utf-16"), "not_json"),
    # A surrogate written as raw bytes is not UTF-8 at all (Python's bytes parser took it).
    "surrogate as raw (CESU-8) bytes": (_raw('"a#b"').replace(b"#", b"\xed\xa0\x80"), "not_json"),
}


@pytest.mark.parametrize("name", list(POISON))
async def test_signed_but_unstorable_body_is_a_4xx_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Runtime, secret: str, name: str
) -> None:
    body, code = POISON[name]
    before = refusals(code)
    with capture_logs() as logs:
        response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["code"] == code
    assert isinstance(answer["detail"], str) and answer["detail"]
    assert await stored_event_count(db) == 0
    assert await job_count(db) == 0
    assert refusals(code) == before + 1
    assert MARKER not in json.dumps(logs, default=str)


ACCEPTED: dict[str, tuple[str, Any]] = {
    "integer of exactly 4,300 digits": ("9" * 4300, int("9" * 4300)),
    "negative integer of 4,300 digits": ("-" + "9" * 4300, -int("9" * 4300)),
    "largest float": ("1.7976931348623157e308", 1.7976931348623157e308),
    "tiny float (underflows to 0)": ("1e-999", 0.0),
    "surrogate pair (an emoji)": ('"\\ud83d\\ude00"', "\U0001f600"),
    "nested to the limit": (_nested(30), json.loads(_nested(30))),
    "escaped backslash-u text": ('"C:\\\\ud800"', "C:\\ud800"),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
async def test_edge_values_the_database_can_store_are_accepted_and_kept_exactly(
    client: httpx.AsyncClient, db: Runtime, secret: str, name: str
) -> None:
    raw, expected = ACCEPTED[name]
    body = _raw(raw)
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 200, response.text
    async with db.sessionmaker() as session:
        stored = await session.scalar(select(InboundWebhookEvent.payload))
    assert stored is not None
    kept = stored["data"]["extra"]
    if isinstance(expected, float):
        # jsonb keeps numbers as numeric: 1.79e308 comes back as a 309-digit integer.
        assert float(kept) == expected
    else:
        assert kept == expected
    assert await job_count(db) == 1


async def test_utf8_byte_order_mark_is_tolerated(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    body = b"\xef\xbb\xbf" + _raw()
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 200, response.text
    assert await stored_event_count(db) == 1


# --- the signature headers: exactly the platform's, each once ------------------------------


def _signed_pairs(body: bytes, secret: str) -> list[tuple[str, str]]:
    return list(signed_headers(body, secret).items())


@pytest.mark.parametrize("recase", ["upper", "mixed"])
async def test_signature_in_upper_or_mixed_case_hex_is_refused(
    client: httpx.AsyncClient, db: Runtime, secret: str, recase: str
) -> None:
    body = _raw()
    headers = signed_headers(body, secret)
    signature = headers["X-Signature"]
    headers["X-Signature"] = (
        signature.upper() if recase == "upper" else signature[:32] + signature[32:].upper()
    )
    assert headers["X-Signature"] != signature
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "malformed_signature"
    assert "lower-case hex" in response.json()["detail"]
    assert await stored_event_count(db) == 0


@pytest.mark.parametrize("header", ["X-Signature", "X-Signature-Timestamp"])
@pytest.mark.parametrize("copies", ["same value twice", "another value second", "case varied"])
async def test_signature_header_sent_twice_is_refused(
    client: httpx.AsyncClient, db: Runtime, secret: str, header: str, copies: str
) -> None:
    body = _raw()
    pairs = _signed_pairs(body, secret)
    value = dict(pairs)[header]
    if copies == "same value twice":
        pairs.append((header, value))
    elif copies == "another value second":
        other = "0" * 64 if header == "X-Signature" else str(int(value) - 1)
        pairs.append((header, other))
    else:
        pairs.append((header.lower(), value))
    response = await client.post(URL, content=body, headers=pairs)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == "malformed_signature"
    assert answer["detail"] == f"{header} was sent 2 times; send it once"
    assert await stored_event_count(db) == 0
    assert await job_count(db) == 0


async def test_duplicate_header_refused_through_a_real_http_server(
    db: Runtime, settings: Settings, secret: str
) -> None:
    """uvicorn keeps both copies too: the refusal does not depend on the test transport."""
    body = _raw()
    async with served(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
        pairs = _signed_pairs(body, secret)
        twice = [*pairs, ("X-Signature", dict(pairs)["X-Signature"])]
        refused = await http.post(URL, content=body, headers=twice)
        poison = _raw("NaN")
        nan = await http.post(URL, content=poison, headers=signed_headers(poison, secret))
        accepted = await http.post(URL, content=body, headers=pairs)
    assert (refused.status_code, refused.json()["code"]) == (400, "malformed_signature")
    assert (nan.status_code, nan.json()["code"]) == (400, "not_json")
    assert accepted.status_code == 200, accepted.text
    assert await stored_event_count(db) == 1
