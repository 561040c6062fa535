"""Capture mode: record platform traffic, secrets and patient data redacted.

Case study lesson 4: the response structure had to be discovered with temporary debug
logging. Capture mode makes that a setting instead of a code change, and redacts on the way
to disk so the recordings can be shared with the platform's support team. It is refused
outside development by the settings and again by the client.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from rxroute.channels.erx import contract as c

REDACTED = "<redacted>"

#: Keys whose values are secrets: credentials, PIN and every token.
SECRET_KEYS = frozenset(
    {
        c.FIELD_CLIENT_SECRET,
        c.FIELD_PASSWORD,
        "secure_pin",
        "access_token",
        "refresh_token",
        "token",
        "id_token",
    }
)
#: Keys whose values are patient data (or free text that may hold it).
PHI_KEYS = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "phone",
        "birth_day",
        "birth_month",
        "birth_year",
        "date_of_birth",
        "dob",
        "address_ln1",
        "address_ln2",
        "city",
        "post_code",
        "nhs_number",
        "description",
        "directions",
        "notes",
    }
)
REDACTED_KEYS = SECRET_KEYS | PHI_KEYS
#: Header values that are credentials. Authorization keeps its scheme word so captures still
#: show the exact format sent (lesson 6), never the token.
_SECRET_HEADERS = frozenset(
    {
        c.HEADER_AUTHORIZATION.lower(),
        c.HEADER_PRESCRIBER_TOKEN.lower(),
        "cookie",
        "set-cookie",
        "proxy-authorization",
    }
)
_SCHEME = re.compile(r"^(\S+)(\s+)\S.*$", re.DOTALL)


def redact_value(key: str, value: Any) -> Any:
    if key.lower() in REDACTED_KEYS and value is not None:
        return REDACTED
    return redact(value)


def redact(value: Any) -> Any:
    """A deep copy of a JSON value with every secret or PHI key's value replaced."""
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def redact_headers(headers: httpx.Headers) -> dict[str, str]:
    result: dict[str, str] = {}
    for raw_name, raw_value in headers.raw:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if name.lower() in _SECRET_HEADERS:
            match = _SCHEME.match(value)
            value = f"{match.group(1)}{match.group(2)}{REDACTED}" if match else REDACTED
        result[name] = value
    return result


def redact_body(content: bytes, content_type: str | None) -> Any:
    """The body as redacted JSON; a body we cannot parse is described, never copied."""
    if not content:
        return None
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == c.CONTENT_TYPE_FORM:
        pairs = parse_qsl(content.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: redact_value(k, v) for k, v in pairs}
    try:
        return redact(json.loads(content))
    except ValueError:
        return f"<unparsed body: {len(content)} bytes of {kind or 'unknown type'}>"


def _request_record(request: httpx.Request) -> dict[str, Any]:
    query = {k: redact_value(k, v) for k, v in request.url.params.multi_items()}
    return {
        "method": request.method,
        "path": request.url.path,
        "query": query,
        "headers": redact_headers(request.headers),
        "body": redact_body(request.content, request.headers.get(c.HEADER_CONTENT_TYPE)),
    }


def _response_record(response: httpx.Response) -> dict[str, Any]:
    return {
        "status_code": response.status_code,
        "headers": redact_headers(response.headers),
        "body": redact_body(response.content, response.headers.get(c.HEADER_CONTENT_TYPE)),
    }


class CaptureWriter:
    """Writes one JSON file per exchange, numbered so the files sort in send order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counter = itertools.count(1)
        self._prefix = f"{int(time.time())}-{os.getpid()}"

    def record(
        self,
        operation: str,
        request: httpx.Request,
        response: httpx.Response | None,
        error: BaseException | None = None,
    ) -> Path:
        """Blocking file I/O: call through ``asyncio.to_thread`` from async code."""
        entry: dict[str, Any] = {
            "operation": operation,
            "request": _request_record(request),
            "response": _response_record(response) if response is not None else None,
            "error": type(error).__name__ if error is not None else None,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        safe_op = re.sub(r"[^a-z0-9_]+", "_", operation.lower())
        path = self.directory / f"{self._prefix}-{next(self._counter):06d}-{safe_op}.json"
        path.write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path
