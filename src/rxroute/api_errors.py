"""The one JSON body every API error answers with, and how operations document it.

The exception handlers in :mod:`rxroute.app` answer every 4xx and 503 of the API as
``{"detail": "...", "errors": [...]}`` (``errors`` only where inputs are at fault). FastAPI's
default document advertises another 422 shape (``HTTPValidationError``), so a client generated
from ``/openapi.json`` would fail to read the real answers. The handlers build their bodies
with :func:`error_body` and every operation declares its error answers with
:func:`error_responses`, so the document and the answers come from one model.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


class FieldError(BaseModel):
    """One input that was refused, and why."""

    field: str = Field(
        description="Dotted path of the input (e.g. `offset`, `items.0.quantity`).",
        examples=["offset"],
    )
    message: str = Field(examples=["Input should be less than or equal to 1000000"])


class ErrorBody(BaseModel):
    """The body of every 4xx and 503 answer of the API."""

    model_config = ConfigDict(title="ErrorBody")

    detail: str = Field(
        description="What went wrong and what to do about it, for a person to read.",
        examples=["invalid request: offset: Input should be less than or equal to 1000000"],
    )
    # ``SkipJsonSchema[None]``: absent rather than null, so the document says exactly that.
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None,
        description="The refused inputs, one entry each (on 422 answers).",
    )
    code: str | SkipJsonSchema[None] = Field(
        default=None,
        description="A stable machine-readable reason, where the operation defines them.",
        examples=["too_large"],
    )


def error_body(
    detail: str, *, errors: list[FieldError] | None = None, code: str | None = None
) -> dict[str, Any]:
    """The JSON content of an error answer, validated against :class:`ErrorBody`."""
    return ErrorBody(detail=detail, errors=errors or None, code=code).model_dump(
        mode="json", exclude_none=True
    )


class ApiError(HTTPException):
    """An HTTP error whose body also names the input at fault (as validation errors do)."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.errors = [FieldError(field=field, message=detail)] if field else []


_DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed; `detail` says how.",
    401: "Not signed in, or the credentials are wrong, expired or revoked.",
    403: "Signed in but not allowed: the role does not permit it, or a call authenticated "
    "by the session cookie lacks its X-CSRF-Token header.",
    404: "No such resource, or not the caller's (the same answer, so existence does not leak).",
    409: "The resource's current state does not allow this (e.g. already dispensed).",
    413: "The body is larger than the server accepts.",
    422: "An input is invalid: `detail` says what, `errors` names each field at fault.",
    429: "Too many attempts: wait the Retry-After seconds before trying again.",
    503: "The database or the prescription platform is out of reach; try again shortly.",
}

_RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 0},
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer` when a bearer token was expected.",
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each status answered with :class:`ErrorBody`."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status_code in status_codes:
        if status_code not in _DESCRIPTIONS:
            raise ValueError(f"no description for HTTP {status_code}; add one to _DESCRIPTIONS")
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[status_code]}
        if status_code in _HEADERS:
            entry["headers"] = _HEADERS[status_code]
        documented[status_code] = entry
    return documented
