"""What an answer from the Region B platform means: HTTP status, body, and errors inside 200.

Case study lesson 3: the platform reports business errors as HTTP 200 with
``"success": false``, so the HTTP status alone never decides. Every answer the client reads
(token, login, API calls) passes through :func:`json_or_raise` then :func:`check_envelope`,
which turn it into the body or a typed failure (:mod:`.errors`); :func:`classify` is the one
place the platform's exact message texts (:mod:`.contract`) become a :class:`RejectReason`
and a hint naming what to fix, so no caller ever parses a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from rxroute.channels.erx import contract as c
from rxroute.channels.erx.base import PrescriberCredentials
from rxroute.channels.erx.errors import (
    RejectedError,
    RejectReason,
    RetryableError,
    UnexpectedResponseError,
    ValidationRejected,
)

#: A garbled answer to one of these may hide work the platform already did: ambiguous.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_or_raise(response: httpx.Response, operation: str) -> Any:
    """The decoded body, after the status codes whose body we do not need to read."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise RetryableError(
            f"{operation}: platform answered HTTP {status}",
            ambiguous=False,
            operation=operation,
            status_code=status,
            retry_after_seconds=_retry_after(response),
        )
    try:
        return response.json()
    except ValueError:
        pass
    if 200 <= status < 300:
        method = response.request.method
        raise UnexpectedResponseError(
            f"{operation}: HTTP {status} body is not JSON",
            ambiguous=method in STATE_CHANGING,
            operation=operation,
            status_code=status,
        )
    if status == 401:
        return {}
    raise RejectedError(
        None,
        reason=RejectReason.NOT_FOUND if status == 404 else RejectReason.OTHER,
        hint=(
            f"HTTP {status} with a non-JSON body: check RXROUTE_ERX_BASE_URL and the "
            "API paths in settings"
        ),
        operation=operation,
        status_code=status,
    )


def check_envelope(
    response: httpx.Response,
    body: Any,
    operation: str,
    *,
    require_success: bool = True,
    prescriber: PrescriberCredentials | None = None,
) -> dict[str, Any]:
    """Lesson 3: ``success`` decides, never the HTTP status alone."""
    status = response.status_code
    method = response.request.method
    if not isinstance(body, dict):
        if 200 <= status < 300:
            raise UnexpectedResponseError(
                f"{operation}: HTTP {status} body is not a JSON object",
                ambiguous=method in STATE_CHANGING,
                operation=operation,
                status_code=status,
            )
        raise RejectedError(None, operation=operation, status_code=status)
    message = body.get(c.FIELD_MESSAGE)
    message = message if isinstance(message, str) else None
    if status == 422:
        errors = body.get(c.FIELD_ERRORS)
        raise ValidationRejected(
            message, field_errors=_field_errors(errors), operation=operation, status_code=422
        )
    success = body.get(c.FIELD_SUCCESS)
    if 200 <= status < 300 and (success is True or (not require_success and success is None)):
        return body
    if 200 <= status < 300 and success is None:
        raise UnexpectedResponseError(
            f"{operation}: HTTP {status} body has no '{c.FIELD_SUCCESS}' flag",
            ambiguous=method in STATE_CHANGING,
            operation=operation,
            status_code=status,
        )
    reason, hint = classify(message, operation, prescriber)
    if status == 404 and reason is RejectReason.OTHER:
        reason = RejectReason.NOT_FOUND
    raise RejectedError(message, reason=reason, hint=hint, operation=operation, status_code=status)


def classify(
    message: str | None, operation: str, prescriber: PrescriberCredentials | None
) -> tuple[RejectReason, str | None]:
    """The reason for a refusal, and a hint, from the platform's message text."""
    text = (message or "").strip()
    lowered = text.lower()
    who = f"prescriber {prescriber.key}" if prescriber is not None else "the prescriber"
    if text == c.MESSAGE_UNAUTHORIZED_CLINIC:
        return RejectReason.UNAUTHORIZED_CLINIC, None  # issue() adds the hint
    if text == c.MESSAGE_INVALID_PRESCRIBER_CREDENTIALS:
        return (
            RejectReason.INVALID_PRESCRIBER_CREDENTIALS,
            f"check the platform email and password stored for {who}",
        )
    if text == c.MESSAGE_INVALID_SECURE_PIN:
        return (
            RejectReason.INVALID_SECURE_PIN,
            "the platform refused the prescriber's 6-digit signing PIN; update it",
        )
    if text == c.MESSAGE_ALREADY_DISPENSED:
        return RejectReason.ALREADY_DISPENSED, "a dispensed prescription cannot be voided"
    if c.KEYWORD_INACTIVE_PRESCRIBER in lowered:
        return (
            RejectReason.INACTIVE_PRESCRIBER,
            f"{who} is not active on the platform; ask the platform's support",
        )
    if operation == "issue" and c.KEYWORD_UNKNOWN_CONTACT in lowered:
        return (
            RejectReason.UNKNOWN_CONTACT,
            "check the pharmacy's platform contact (branch) ID; list_contacts shows them",
        )
    return RejectReason.OTHER, None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get(c.HEADER_RETRY_AFTER)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _field_errors(errors: Any) -> dict[str, list[str]]:
    if not isinstance(errors, Mapping):
        return {}
    result: dict[str, list[str]] = {}
    for key, value in errors.items():
        if isinstance(value, list):
            result[str(key)] = [str(v) for v in value]
        else:
            result[str(key)] = [str(value)]
    return result
