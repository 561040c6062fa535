"""``POST /webhooks/erx``: verify, store, enqueue, answer at once.

The signature is checked over the raw bytes before anything is parsed. Anything unsigned,
mis-signed, stale, empty, not JSON or too large is refused with a 4xx and a JSON reason, and
nothing of it is stored: only a counter and a log line without the body. A signed body the
database could not store (NaN, a number beyond a float, an integer too long to write back,
a lone surrogate, U+0000) is refused the same way before the database is touched: a 500
would make the sender retry the same poison body until it gave up. A verified event
is stored (unique per provider event id, so a redelivery is acknowledged and not stored
again) and its processing job is deferred in the same transaction: one statement, one round
trip, shared with the webhooks that arrived while the previous one was in flight
(:mod:`rxroute.webhooks.ingest`). No call to the platform
or other slow work happens inside the request.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any, NoReturn

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from rxroute.api_errors import error_responses
from rxroute.auth.dependencies import RuntimeDep
from rxroute.observability.metrics import WEBHOOKS
from rxroute.webhooks.ingest import Arrival, IngestQueue
from rxroute.webhooks.signature import (
    HEADER_SIGNATURE,
    HEADER_SIGNATURE_TIMESTAMP,
    MalformedSignatureHeader,
    SignatureError,
    single_header,
    verify,
)

log = structlog.get_logger(__name__)
router = APIRouter(tags=["webhooks"])

PROVIDER = "signaturerx"
#: The receiver's :class:`IngestQueue`, one per runtime (``Runtime.services``).
INGEST_SERVICE = "webhook_ingest"

#: Python's default cap on int <-> str conversion (``sys.int_info.default_max_str_digits``):
#: a longer integer could not be written back out as JSON to store it.
MAX_INTEGER_DIGITS = 4300
#: An event is three levels deep. A far deeper body is refused at this stated depth, not at
#: whatever depth Python's stack happens to give out while parsing or re-encoding it.
MAX_DEPTH = 32


#: Refusals by reason, for the support console and the benchmark; per process.
def _refuse(status: int, reason: str, code: str) -> JSONResponse:
    WEBHOOKS.labels(outcome="refused", reason=code).inc()
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


class RefusedBody(Exception):
    """A signed body that is not strict JSON, or that the database cannot store."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _refuse_constant(name: str) -> NoReturn:
    raise RefusedBody("not_json", f"{name} is not a JSON number (RFC 8259)")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise RefusedBody("unstorable", f"an integer has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise RefusedBody("unstorable", "a number is too large for a 64-bit float")
    return value


def _check_storable(document: object) -> None:
    """Refuse strings (keys and values) PostgreSQL cannot hold.

    jsonb refuses U+0000, and neither jsonb nor a text column can hold a lone UTF-16
    surrogate (``"\\ud800"`` parses to one in Python). Walked with a stack, not recursion,
    so the walk itself cannot overflow; the nesting was bounded before parsing
    (:func:`_nested_too_deep`).
    """
    stack: list[object] = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise RefusedBody(
                    "unstorable", "body contains a U+0000 character, which cannot be stored"
                )
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise RefusedBody(
                    "unstorable",
                    "body contains a lone UTF-16 surrogate (such as \\ud800), which is not "
                    "Unicode text and cannot be stored",
                ) from None
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append(key)
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def _nested_too_deep(text: str) -> bool:
    """Whether the text opens more than :data:`MAX_DEPTH` arrays or objects inside each other.

    Checked before parsing, because Python's parser recurses: how deep it gets before a
    RecursionError depends on how deep the stack already is (the middleware in front of
    the route), and the refusal must be the same whatever that is. Brackets inside strings
    do not count. A body with no more than :data:`MAX_DEPTH` brackets in all cannot be too
    deep, so an ordinary event costs two counts.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def parse_strict(body: bytes) -> Any:
    """The body as JSON that can be stored as it is, or :class:`RefusedBody` saying why not.

    Strict where Python's parser is lenient: UTF-8 only (not UTF-16/32, no encoded
    surrogates), no ``NaN``/``Infinity``, no number that overflows a float, no integer
    longer than Python can write back out; then every string is checked for storability.
    """
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
        if _nested_too_deep(text):
            raise RefusedBody("unstorable", f"body is nested deeper than {MAX_DEPTH} levels")
        document = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except UnicodeDecodeError:
        raise RefusedBody("not_json", "body is not UTF-8") from None
    except (json.JSONDecodeError, RecursionError):
        raise RefusedBody("not_json", "body is not JSON (or nested too deeply)") from None
    except ValueError:
        # int() refusing a long integer (Python's conversion limit may be set lower).
        raise RefusedBody("unstorable", "a number cannot be converted") from None
    _check_storable(document)
    return document


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
    headers = request.headers
    try:
        verify(
            body,
            single_header(headers.getlist(HEADER_SIGNATURE), HEADER_SIGNATURE),
            single_header(headers.getlist(HEADER_SIGNATURE_TIMESTAMP), HEADER_SIGNATURE_TIMESTAMP),
            webhook_secrets(runtime),
            now=time.time,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
    except MalformedSignatureHeader as exc:
        return _refuse(400, str(exc), "malformed_signature")
    except SignatureError as exc:
        return _refuse(401, str(exc), type(exc).__name__)
    try:
        document = parse_strict(body)
    except RefusedBody as exc:
        return _refuse(400, exc.reason, exc.code)
    if not isinstance(document, dict):
        return _refuse(400, "body is not a JSON object", "not_object")
    event_id = document.get("id")
    event_type = document.get("event")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
        return _refuse(400, "id: missing or not a string of at most 200 characters", "no_id")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
        return _refuse(400, "event: missing or not a string", "no_type")

    ingest = runtime.services.get(INGEST_SERVICE)
    if ingest is None:
        ingest = runtime.services[INGEST_SERVICE] = IngestQueue(
            PROVIDER, lambda: runtime.queue_pool
        )
    stored = await ingest.store(
        Arrival(event_id, event_type, document, processing_lock_key(document))
    )
    if not stored:
        WEBHOOKS.labels(outcome="duplicate", reason="").inc()
        log.info("webhook_duplicate", event_id=event_id)
        return JSONResponse(content={"status": "duplicate", "id": event_id})
    WEBHOOKS.labels(outcome="accepted", reason="").inc()
    log.info("webhook_accepted", event_id=event_id, event_type=event_type)
    return JSONResponse(content={"status": "accepted", "id": event_id})
