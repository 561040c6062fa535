"""Reading requests and shaping answers the way the platform does.

Shared by the platform's API (``app``) and the control API (``control``), so a malformed body
gets the same answer from both, in the platform's ``{"success": false, "message"}`` shape.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

UNAUTHENTICATED = "Unauthenticated."
INVALID_DATA = "The given data was invalid."


class BadRequest(Exception):
    """A request the sandbox refuses before acting on it; the app turns it into JSON."""

    def __init__(self, status_code: int, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.errors = errors


def json_response(status_code: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status_code)


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """A settings model's refusal as ``{field: [messages]}``: the control API's JSON and the
    faults page's form name the same fields with the same words."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "body"
        errors.setdefault(key, []).append(error["msg"])
    return errors


def fail(message: str, status_code: int = 200) -> JSONResponse:
    return json_response(status_code, {"success": False, "message": message})


def bearer(request: Request) -> str | None:
    """The access token if the header is exactly ``Bearer <token>``; anything else is None."""
    values = request.headers.getlist("authorization")
    if len(values) != 1 or not values[0].startswith("Bearer "):
        return None
    token = values[0][len("Bearer ") :]
    if not token or token != token.strip() or any(ch.isspace() for ch in token):
        return None
    return token


def session_token(request: Request) -> str | None:
    values = request.headers.getlist("x-prescriber-token")
    if len(values) != 1:
        return None
    value = values[0]
    if not value or any(ch.isspace() for ch in value):
        return None
    return value


async def json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest(415, "Unsupported Media Type: send application/json.")
    raw = await request.body()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest(400, "Malformed JSON body.") from None
    if not isinstance(data, dict):
        raise BadRequest(422, INVALID_DATA, {"body": ["The request body must be a JSON object."]})
    return data


async def form_body(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise BadRequest(415, "Unsupported Media Type: send a form.")
    raw = await request.body()
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "Malformed form body.") from None
    return {key: values[0] for key, values in parsed.items() if values}


def link_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
