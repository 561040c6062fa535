"""Idempotency keys for POSTs from integrating platforms.

Semantics are Stripe's, with the status codes of the IETF ``Idempotency-Key`` header draft:
a platform that did not hear our answer (timeout, dropped connection) sends the same request
again with the same ``Idempotency-Key`` and gets the first answer back, with
``Idempotent-Replayed: true``, instead of a second prescription. The same key with another
body is 422; the same key while its first request is still running is 409; no key is 400.
Keys belong to one API client (two platforms may pick the same key) and are kept
``RXROUTE_IDEMPOTENCY_RETENTION_HOURS`` (24 at least), then purged by a periodic job.

How it is made safe, and why this way rather than an ``in_flight`` row committed first:

* Everything happens in the request's own transaction (``SessionDep``): take a
  transaction-scoped advisory lock on (client, key) with ``pg_try_advisory_xact_lock``, look
  the key up, run the operation, and insert the key's row with the answer. The row and the
  operation's effect (the prescription) commit together or not at all, so a crash at any
  point never leaves one without the other, and a retry after a crash simply runs again.
* "In flight" is the lock itself: PostgreSQL holds it exactly while the first request's
  transaction is open and drops it when the transaction ends, crash included. A second
  request that cannot take it answers 409 at once instead of queueing. Once the first
  commits, the lock is free and its row is visible (PostgreSQL makes a commit visible before
  releasing its locks), so a later retry replays it.
* A committed ``in_flight`` row written in a separate short transaction first would need a
  second pooled connection while the request's own is held (20 parallel requests against a
  pool of 20 then wait on each other until the pool times out), and a crash between the two
  transactions would leave a row saying "in flight" forever, needing a timeout and a
  takeover rule. The lock has neither problem.
* A failed operation (a 4xx such as an unknown patient, or a 5xx) rolls back and stores
  nothing: nothing was created, so a retry with the same key is free to run again (and to
  succeed once the platform has fixed the cause).

The lock id is 64 bits of SHA-256 over (client, key); two different keys colliding would
only make one of them wait its turn with a 409, never share an answer (the row lookup uses
the real key). Only operations whose whole effect is in the database fit this design: one
that calls a platform or SMTP must not hold the transaction open across the call.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import Header, Request, Response, status
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.api_errors import ApiError
from rxroute.config import Settings
from rxroute.db.purge import delete_in_batches
from rxroute.models import IdempotencyKey
from rxroute.runtime import Runtime

log = structlog.get_logger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: Printable ASCII: what every HTTP stack passes through unchanged.
_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            description=(
                "Required. A unique value per request (e.g. a UUID), 1 to 255 printable "
                "ASCII characters; send the same value when retrying it. Kept for 24 hours."
            ),
        ),
    ] = None,
) -> str:
    """A dependency: the request's ``Idempotency-Key``, or 400 naming the header."""
    if key is None or not key.strip():
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            f"{IDEMPOTENCY_HEADER} header: required; send a unique value per request "
            "(e.g. a UUID) and the same value when you retry it",
            field=IDEMPOTENCY_HEADER,
        )
    cleaned = key.strip()
    if not _KEY.fullmatch(cleaned):
        raise ApiError(
            status.HTTP_400_BAD_REQUEST,
            f"{IDEMPOTENCY_HEADER} header: 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            field=IDEMPOTENCY_HEADER,
        )
    return cleaned


def fingerprint(method: str, path: str, payload: Any) -> str:
    """SHA-256 of method, path and the body as canonical JSON (sorted keys, no spaces), so
    a retry that serialises the same body differently is still the same request."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{method.upper()}\n{path}\n{canonical}".encode()).hexdigest()


async def request_fingerprint(request: Request) -> str:
    """The fingerprint of a JSON request (its body was already read and validated)."""
    return fingerprint(request.method, request.url.path, await request.json())


def _lock_id(client_id: uuid.UUID, key: str) -> int:
    digest = hashlib.sha256(f"idempotency\n{client_id}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Answer:
    """An operation's answer: its status and its JSON body, exactly as sent."""

    status_code: int
    body: str

    @classmethod
    def json(cls, status_code: int, content: Any) -> Answer:
        return cls(status_code, json.dumps(content, separators=(",", ":")))

    def response(self, *, replayed: bool = False) -> Response:
        headers = {REPLAYED_HEADER: "true"} if replayed else None
        return Response(
            content=self.body,
            status_code=self.status_code,
            media_type="application/json",
            headers=headers,
        )


def retention(settings: Settings) -> timedelta:
    return timedelta(hours=settings.idempotency_retention_hours)


async def run_once(
    session: AsyncSession,
    settings: Settings,
    *,
    client_id: uuid.UUID,
    key: str,
    request_fingerprint: str,
    operation: Callable[[], Awaitable[Answer]],
) -> Response:
    """Run ``operation`` once per (client, key) in the caller's transaction; replay after.

    The caller owns the transaction (and commits it); see the module docstring for why the
    key's row and the operation's effect must share it.
    """
    # No autoflush until the key is ours: a pending write of the caller's (the API client's
    # last-used time) would otherwise wait behind the request in flight instead of a 409.
    with session.no_autoflush:
        locked = await session.scalar(
            select(func.pg_try_advisory_xact_lock(_lock_id(client_id, key)))
        )
        if not locked:
            raise ApiError(
                status.HTTP_409_CONFLICT,
                f"{IDEMPOTENCY_HEADER}: a request with this key is still in progress; "
                "retry it once that one has finished",
                field=IDEMPOTENCY_HEADER,
            )
        stored = await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.client_id == client_id, IdempotencyKey.key == key
            )
        )
    if stored is not None and stored.created_at < datetime.now(UTC) - retention(settings):
        # Past retention but not purged yet: expired all the same, so expiry does not
        # depend on when the purge job last ran.
        await session.delete(stored)
        await session.flush()
        stored = None
    if stored is not None:
        if stored.fingerprint != request_fingerprint:
            raise ApiError(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"{IDEMPOTENCY_HEADER}: this key was already used for a different request; "
                "use a new key for a new request",
                field=IDEMPOTENCY_HEADER,
            )
        log.info("idempotent_replay", client_id=str(client_id), key_id=str(stored.id))
        return Answer(stored.response_status, stored.response_body).response(replayed=True)
    answer = await operation()
    session.add(
        IdempotencyKey(
            client_id=client_id,
            key=key,
            fingerprint=request_fingerprint,
            response_status=answer.status_code,
            response_body=answer.body,
        )
    )
    await session.flush()
    return answer.response()


async def purge_expired(runtime: Runtime, now: datetime | None = None) -> int:
    """Delete keys older than the retention, in batches; returns how many."""
    cutoff = (now or datetime.now(UTC)) - retention(runtime.settings)
    return await delete_in_batches(
        runtime.sessionmaker, IdempotencyKey, IdempotencyKey.created_at < cutoff
    )
