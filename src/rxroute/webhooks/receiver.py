"""``POST /webhooks/erx``: verify, store, enqueue, answer at once.

The signature is checked over the raw bytes before anything is parsed. Anything unsigned,
mis-signed, stale, empty, not JSON or too large is refused with a 4xx and a JSON reason, and
nothing of it is stored: only a counter and a log line without the body. A verified event
is stored (unique per provider event id, so a redelivery is acknowledged and not stored
again) and its processing job is deferred in the same transaction. No call to the platform
or other slow work happens inside the request.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.dialects.postgresql import insert

from rxroute.api_errors import error_responses
from rxroute.auth.dependencies import RuntimeDep
from rxroute.models import InboundWebhookEvent
from rxroute.webhooks.signature import (
    HEADER_SIGNATURE,
    HEADER_SIGNATURE_TIMESTAMP,
    MalformedSignatureHeader,
    SignatureError,
    verify,
)

log = structlog.get_logger(__name__)
router = APIRouter(tags=["webhooks"])

PROVIDER = "signaturerx"

#: Refusals by reason, for the support console and the benchmark; per process.
refusals: Counter[str] = Counter()


def _refuse(status: int, reason: str, code: str) -> JSONResponse:
    refusals[code] += 1
    log.warning("webhook_refused", reason=code, status=status)
    return JSONResponse(status_code=status, content={"detail": reason, "code": code})


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` bytes (without reading the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def processing_lock_key(document: dict[str, Any]) -> str:
    """The lock serialising an event's processing: its platform prescription, else itself.

    Also used when support reprocesses a stored event, so both take the same lock.
    """
    data = document.get("data")
    provider_prescription_id = data.get("prescription_id") if isinstance(data, dict) else None
    return str(provider_prescription_id or document.get("id"))


def _has_nul(value: object) -> bool:
    """Whether any string (key or value) in a parsed JSON document holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def webhook_secrets(runtime: Any) -> list[str]:
    settings = runtime.settings
    secrets = [settings.webhook_secret.get_secret_value()]
    if settings.webhook_secret_previous is not None:
        secrets.append(settings.webhook_secret_previous.get_secret_value())
    return [secret for secret in secrets if secret]


@router.post(
    "/webhooks/erx",
    status_code=200,
    name="receive_erx",
    summary="Receive a platform webhook",
    responses=error_responses(400, 401, 413, 503),
)
async def receive_erx_webhook(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """Receive a platform status webhook. Answers 2xx at once; processing happens in a job."""
    settings = runtime.settings
    body = await _read_capped(request, settings.webhook_max_body_bytes)
    if body is None:
        return _refuse(
            413, f"body larger than {settings.webhook_max_body_bytes} bytes", "too_large"
        )
    if not body.strip():
        return _refuse(400, "empty body", "empty")
    try:
        verify(
            body,
            request.headers.get(HEADER_SIGNATURE),
            request.headers.get(HEADER_SIGNATURE_TIMESTAMP),
            webhook_secrets(runtime),
            now=time.time,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
    except MalformedSignatureHeader as exc:
        return _refuse(400, str(exc), "malformed_signature")
    except SignatureError as exc:
        return _refuse(401, str(exc), type(exc).__name__)
    try:
        document = json.loads(body)
        unstorable = _has_nul(document)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return _refuse(400, "body is not JSON (or nested too deeply)", "not_json")
    if unstorable:
        # PostgreSQL's jsonb cannot hold U+0000; storing it would fail with a 500 and the
        # sender would retry the same body until it gave up.
        return _refuse(
            400, "body contains a U+0000 character, which cannot be stored", "unstorable"
        )
    if not isinstance(document, dict):
        return _refuse(400, "body is not a JSON object", "not_object")
    event_id = document.get("id")
    event_type = document.get("event")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
        return _refuse(400, "id: missing or not a string of at most 200 characters", "no_id")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
        return _refuse(400, "event: missing or not a string", "no_type")

    from rxroute.webhooks.tasks import defer_processing

    async with runtime.sessionmaker() as session, session.begin():
        inserted = await session.scalar(
            insert(InboundWebhookEvent)
            .values(
                provider=PROVIDER,
                provider_event_id=event_id,
                event_type=event_type,
                payload=document,
            )
            .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
            .returning(InboundWebhookEvent.id)
        )
        if inserted is not None:
            await defer_processing(session, inserted, lock_key=processing_lock_key(document))
    if inserted is None:
        log.info("webhook_duplicate", event_id=event_id)
        return JSONResponse(content={"status": "duplicate", "id": event_id})
    log.info("webhook_accepted", event_id=event_id, event_type=event_type)
    return JSONResponse(content={"status": "accepted", "id": event_id})
