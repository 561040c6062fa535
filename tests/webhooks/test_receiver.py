"""``POST /webhooks/erx``: verified events stored once and queued; everything else refused.

Every refusal is checked the same way: a 4xx with a JSON reason, and nothing stored (no
event row and no job), counted in the database rather than trusted from the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select, text
from structlog.testing import capture_logs

from rxroute.config import Settings
from rxroute.models import InboundWebhookEvent
from rxroute.runtime import Runtime
from rxroute.webhooks import receiver
from rxroute.webhooks.signature import sign
from tests.webhooks.helpers import (
    encode,
    event_payload,
    job_count,
    refusals,
    signed_headers,
    stored_event_count,
)

URL = "/webhooks/erx"
LIMIT = 64 * 1024


@pytest.fixture
def secret(settings: Settings) -> str:
    return settings.webhook_secret.get_secret_value()


def _event(**overrides: Any) -> dict[str, Any]:
    payload = event_payload(status="dispensed", provider_id="SRXC49F3D4F66A7")
    payload.update(overrides)
    return payload


async def _assert_nothing_stored(db: Runtime) -> None:
    assert await stored_event_count(db) == 0
    assert await job_count(db) == 0


# --- accepted -----------------------------------------------------------------------------


async def test_valid_event_is_stored_once_and_its_processing_queued(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    payload = _event()
    body = encode(payload)
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "id": payload["id"]}
    async with db.sessionmaker() as session:
        stored = list(await session.scalars(select(InboundWebhookEvent)))
        jobs = (
            await session.execute(
                text("SELECT task_name, lock, args, status FROM procrastinate_jobs")
            )
        ).all()
    assert len(stored) == 1
    event = stored[0]
    assert (event.provider_event_id, event.event_type, event.state) == (
        payload["id"],
        "prescription.status_changed",
        "pending",
    )
    assert event.payload == payload
    assert len(jobs) == 1
    task_name, lock, args, status = jobs[0]
    assert task_name == "process_webhook_event"
    assert args == {"event_id": str(event.id)}
    # One at a time per platform prescription.
    assert lock == "erx:SRXC49F3D4F66A7"
    assert status == "todo"


async def test_duplicate_event_id_is_acknowledged_and_not_stored_again(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    payload = _event()
    body = encode(payload)
    first = await client.post(URL, content=body, headers=signed_headers(body, secret))
    again = await client.post(URL, content=body, headers=signed_headers(body, secret))
    # Same event id, different body (the sender rebuilt it): still a duplicate.
    rebuilt = encode({**payload, "created_at": "2030-01-01T00:00:00Z"})
    third = await client.post(URL, content=rebuilt, headers=signed_headers(rebuilt, secret))
    assert first.json()["status"] == "accepted"
    for response in (again, third):
        assert response.status_code == 200
        assert response.json() == {"status": "duplicate", "id": payload["id"]}
    assert await stored_event_count(db) == 1
    assert await job_count(db) == 1


async def test_concurrent_redeliveries_store_one_event(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    body = encode(_event())
    answers = await asyncio.gather(
        *(client.post(URL, content=body, headers=signed_headers(body, secret)) for _ in range(8))
    )
    assert [a.status_code for a in answers] == [200] * 8
    assert sorted(a.json()["status"] for a in answers) == ["accepted"] + ["duplicate"] * 7
    assert await stored_event_count(db) == 1
    assert await job_count(db) == 1


async def test_no_platform_call_inside_the_request(
    client: httpx.AsyncClient, db: Runtime, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the receiver called the platform ({name})")

    monkeypatch.setitem(db.services, "erx", Exploding())
    body = encode(_event())
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 200
    assert await stored_event_count(db) == 1


async def test_body_exactly_at_the_limit_is_accepted(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    payload = _event(padding="")
    payload["padding"] = "x" * (LIMIT - len(encode(payload)))
    body = encode(payload)
    assert len(body) == LIMIT
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 200, response.text
    assert await stored_event_count(db) == 1


# --- refused ------------------------------------------------------------------------------

Case = Callable[[str], tuple[bytes, dict[str, str]]]


def _unsigned(secret: str) -> tuple[bytes, dict[str, str]]:
    return encode(_event()), {"Content-Type": "application/json"}


def _no_timestamp(secret: str) -> tuple[bytes, dict[str, str]]:
    body = encode(_event())
    headers = signed_headers(body, secret)
    del headers["X-Signature-Timestamp"]
    return body, headers


def _wrong_secret(secret: str) -> tuple[bytes, dict[str, str]]:
    body = encode(_event())
    return body, signed_headers(body, "someone-elses-secret")


def _tampered(secret: str) -> tuple[bytes, dict[str, str]]:
    body = encode(_event())
    headers = signed_headers(body, secret)
    return body.replace(b'"dispensed"', b'"voided"'), headers


def _timestamp_swapped(secret: str) -> tuple[bytes, dict[str, str]]:
    body = encode(_event())
    headers = signed_headers(body, secret)
    headers["X-Signature-Timestamp"] = str(int(headers["X-Signature-Timestamp"]) - 1)
    return body, headers


def _stale(offset: int) -> Case:
    def build(secret: str) -> tuple[bytes, dict[str, str]]:
        body = encode(_event())
        return body, signed_headers(body, secret, int(time.time()) + offset)

    return build


def _header(name: str, value: str) -> Case:
    def build(secret: str) -> tuple[bytes, dict[str, str]]:
        body = encode(_event())
        headers = signed_headers(body, secret)
        headers[name] = value
        return body, headers

    return build


def _signed(body: bytes) -> Case:
    def build(secret: str) -> tuple[bytes, dict[str, str]]:
        return body, signed_headers(body, secret)

    return build


def _signed_event_without(key: str) -> Case:
    payload = _event()
    del payload[key]
    return _signed(encode(payload))


REFUSALS: dict[str, tuple[Case, int, str]] = {
    "unsigned": (_unsigned, 401, "MissingSignatureHeader"),
    "no timestamp header": (_no_timestamp, 401, "MissingSignatureHeader"),
    "signed with another secret": (_wrong_secret, 401, "SignatureMismatch"),
    "body tampered after signing": (_tampered, 401, "SignatureMismatch"),
    "timestamp changed after signing": (_timestamp_swapped, 401, "SignatureMismatch"),
    "timestamp 6 minutes old": (_stale(-360), 401, "StaleTimestamp"),
    "timestamp 6 minutes ahead": (_stale(360), 401, "StaleTimestamp"),
    "timestamp a day old": (_stale(-86_400), 401, "StaleTimestamp"),
    "signature with a scheme prefix": (
        _header("X-Signature", "sha256=" + "a" * 64),
        400,
        "malformed_signature",
    ),
    "signature not hex": (_header("X-Signature", "z" * 64), 400, "malformed_signature"),
    "signature too short": (_header("X-Signature", "ab" * 16), 400, "malformed_signature"),
    "timestamp not a number": (
        _header("X-Signature-Timestamp", "yesterday"),
        400,
        "malformed_signature",
    ),
    "timestamp negative": (_header("X-Signature-Timestamp", "-5"), 400, "malformed_signature"),
    "timestamp with decimals": (
        _header("X-Signature-Timestamp", "1700000000.5"),
        400,
        "malformed_signature",
    ),
    "timestamp absurdly long": (
        _header("X-Signature-Timestamp", "9" * 40),
        400,
        "malformed_signature",
    ),
    "empty body": (_signed(b""), 400, "empty"),
    "whitespace body": (_signed(b"  \n "), 400, "empty"),
    "not JSON": (_signed(b"id=evt_1&status=dispensed"), 400, "not_json"),
    "not UTF-8": (_signed(b'{"id": "\xff\xfe"}'), 400, "not_json"),
    "JSON array": (_signed(encode([_event()])), 400, "not_object"),
    "JSON string": (_signed(b'"evt_1"'), 400, "not_object"),
    "JSON null": (_signed(b"null"), 400, "not_object"),
    "missing id": (_signed_event_without("id"), 400, "no_id"),
    "id not a string": (_signed(encode(_event(id=12345))), 400, "no_id"),
    "id empty": (_signed(encode(_event(id=""))), 400, "no_id"),
    "id too long": (_signed(encode(_event(id="e" * 201))), 400, "no_id"),
    "missing event type": (_signed_event_without("event"), 400, "no_type"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
async def test_refused_with_a_json_reason_and_nothing_stored(
    client: httpx.AsyncClient, db: Runtime, secret: str, name: str
) -> None:
    build, status, code = REFUSALS[name]
    body, headers = build(secret)
    before = refusals(code)
    with capture_logs() as logs:
        response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["code"] == code
    assert isinstance(answer["detail"], str) and answer["detail"]
    await _assert_nothing_stored(db)
    # Counted, and logged without the body.
    assert refusals(code) == before + 1
    refused = [entry for entry in logs if entry["event"] == "webhook_refused"]
    assert [entry["reason"] for entry in refused] == [code]
    logged = json.dumps(logs, default=str)
    assert "SRXC49F3D4F66A7" not in logged
    assert "dispensed" not in logged


async def test_body_over_the_limit_by_declared_length_is_refused_unread(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    body = encode(_event())
    headers = signed_headers(body, secret)
    headers["Content-Length"] = str(LIMIT + 1)
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10):
            sent += 1
            yield b" " * 8192

    response = await client.post(URL, content=stream(), headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert sent <= 1, "the receiver read a body it had already refused"
    await _assert_nothing_stored(db)


async def test_body_over_the_limit_by_bytes_is_refused(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    payload = _event(padding="x" * LIMIT)
    body = encode(payload)
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    await _assert_nothing_stored(db)


async def test_streamed_body_over_the_limit_is_refused_without_reading_it_all(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    chunk = b" " * 8192
    chunks_total = 64
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(chunks_total):
            sent += 1
            yield chunk

    # Chunked: no Content-Length to refuse it by, so the cap must hold while reading.
    headers = signed_headers(b"", secret)
    response = await client.post(URL, content=stream(), headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert sent <= LIMIT // len(chunk) + 2
    await _assert_nothing_stored(db)


# --- replay ---------------------------------------------------------------------------------


async def test_captured_event_replayed_later_is_refused(
    client: httpx.AsyncClient, db: Runtime, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = _event()
    body = encode(payload)
    captured = signed_headers(body, secret)
    assert (await client.post(URL, content=body, headers=captured)).status_code == 200
    # Six minutes later, the same request from an attacker's capture.
    later = time.time() + 360
    monkeypatch.setattr(receiver, "time", SimpleNamespace(time=lambda: later))
    replay = await client.post(URL, content=body, headers=captured)
    assert replay.status_code == 401
    assert replay.json()["code"] == "StaleTimestamp"
    # A fresh timestamp does not help without the secret: it is inside the signed string.
    refreshed = {**captured, "X-Signature-Timestamp": str(int(later))}
    forged = await client.post(URL, content=body, headers=refreshed)
    assert forged.status_code == 401
    assert forged.json()["code"] == "SignatureMismatch"
    assert await stored_event_count(db) == 1


async def test_new_event_with_an_old_capture_time_is_refused(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    body = encode(_event())
    old = signed_headers(body, secret, int(time.time()) - 3600)
    response = await client.post(URL, content=body, headers=old)
    assert response.status_code == 401
    assert response.json()["code"] == "StaleTimestamp"
    await _assert_nothing_stored(db)


async def test_within_the_tolerance_either_way_is_accepted(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    for offset in (-240, 240):
        body = encode(_event())
        headers = signed_headers(body, secret, int(time.time()) + offset)
        response = await client.post(URL, content=body, headers=headers)
        assert response.status_code == 200, response.text
    assert await stored_event_count(db) == 2


# --- secret rotation --------------------------------------------------------------------------


async def test_rotation_accepts_current_and_previous_secret_only(
    client: httpx.AsyncClient, db: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotated = settings.model_copy(
        update={
            "webhook_secret": SecretStr("whsec-new"),
            "webhook_secret_previous": SecretStr("whsec-old"),
        }
    )
    monkeypatch.setattr(db, "settings", rotated)
    answers = {}
    for secret in (
        "whsec-new",
        "whsec-old",
        "whsec-other",
        settings.webhook_secret.get_secret_value(),
    ):
        body = encode(_event())
        response = await client.post(URL, content=body, headers=signed_headers(body, secret))
        answers[secret] = response.status_code
    assert answers == {
        "whsec-new": 200,
        "whsec-old": 200,
        "whsec-other": 401,
        settings.webhook_secret.get_secret_value(): 401,
    }
    assert await stored_event_count(db) == 2
    # Rotation finished: the previous secret is unset and stops working.
    monkeypatch.setattr(
        db, "settings", rotated.model_copy(update={"webhook_secret_previous": None})
    )
    body = encode(_event())
    old = await client.post(URL, content=body, headers=signed_headers(body, "whsec-old"))
    assert old.status_code == 401
    new = await client.post(URL, content=body, headers=signed_headers(body, "whsec-new"))
    assert new.status_code == 200
    assert await stored_event_count(db) == 3


def test_sign_is_the_contract_scheme() -> None:
    import hashlib
    import hmac

    body = b'{"id":"evt_1"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", 1_700_000_000, body) == expected


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_webhook_secret_refused_at_startup(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="RXROUTE_WEBHOOK_SECRET is empty"):
        Settings(webhook_secret=SecretStr(value), _env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("RXROUTE_WEBHOOK_SECRET", value)
    with pytest.raises(ValidationError, match="RXROUTE_WEBHOOK_SECRET is empty"):
        Settings(_env_file=None)  # type: ignore[call-arg]


# --- signed but unstorable: still a 4xx, never a 500 ------------------------------------------


async def test_signed_but_absurdly_nested_json_is_refused_not_a_500(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    body = b'{"id":"evt_deep","event":"prescription.status_changed","data":' + (
        b"[" * 20_000 + b"]" * 20_000 + b"}"
    )
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 400, response.text
    # Refused at the stated depth before parsing, whatever depth the stack is at already.
    assert response.json()["code"] == "unstorable"
    assert "nested deeper than" in response.json()["detail"]
    await _assert_nothing_stored(db)


async def test_signed_event_with_a_nul_character_is_refused_not_a_500(
    client: httpx.AsyncClient, db: Runtime, secret: str
) -> None:
    """PostgreSQL's jsonb cannot hold U+0000: refuse it instead of failing to store it."""
    body = encode(_event(note="a\u0000b"))
    assert b"\\u0000" in body
    response = await client.post(URL, content=body, headers=signed_headers(body, secret))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "unstorable"
    await _assert_nothing_stored(db)
    # A literal backslash-u sequence is ordinary text and is accepted.
    fine = encode(_event(note="C:\\u0000"))
    response = await client.post(URL, content=fine, headers=signed_headers(fine, secret))
    assert response.status_code == 200, response.text
