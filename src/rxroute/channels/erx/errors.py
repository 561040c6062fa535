"""Typed failures of the Region B channel.

The send job needs exactly three answers from a failure: may I retry, might the platform
already have acted (so I must look up ``client_ref_id`` before retrying), and what should a
person fix. The classes below carry those answers so no caller ever parses a message string.
Messages carry identifiers only, never patient data, so they are safe to log and to show.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence


class ErxError(Exception):
    """Base of every failure the platform client raises."""

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        super().__init__(message)
        self.operation = operation

    @property
    def detail(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.detail


class RetryableError(ErxError):
    """Trying again later may work.

    ``ambiguous`` is true when the request may have reached the platform and been acted on
    (timeout or connection lost after sending, a garbled success answer). The platform does
    not deduplicate, so after an ambiguous failure of ``issue`` the caller must look up
    ``client_ref_id`` before issuing again.
    """

    def __init__(
        self,
        message: str,
        *,
        ambiguous: bool,
        operation: str | None = None,
        status_code: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message, operation=operation)
        self.ambiguous = ambiguous
        self.status_code = status_code
        self.retry_after_seconds = retry_after_seconds


class UnexpectedResponseError(RetryableError):
    """The platform answered in a shape we cannot read (not JSON, no ``data.prescription.id``).

    Retryable because a proxy error page is usually transient; ambiguous for requests that
    change state, because the platform may have done the work before the answer got mangled.
    """


class RejectReason(enum.StrEnum):
    """Why the platform said no, where we recognise it; drives the hint and the UI."""

    INVALID_CLIENT = "invalid_client"
    INVALID_PRESCRIBER_CREDENTIALS = "invalid_prescriber_credentials"
    UNAUTHORIZED_CLINIC = "unauthorized_clinic"
    INVALID_SECURE_PIN = "invalid_secure_pin"
    UNKNOWN_CONTACT = "unknown_contact"
    INACTIVE_PRESCRIBER = "inactive_prescriber"
    ALREADY_DISPENSED = "already_dispensed"
    NOT_FOUND = "not_found"
    VALIDATION = "validation"
    OTHER = "other"


class RejectedError(ErxError):
    """The platform refused the request; retrying the same request will not help.

    ``platform_message`` is the platform's own text, kept verbatim because support will ask
    for it; ``hint`` is ours, naming what to change where we know the cause.
    """

    def __init__(
        self,
        platform_message: str | None,
        *,
        reason: RejectReason = RejectReason.OTHER,
        hint: str | None = None,
        operation: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(platform_message or "", operation=operation)
        self.platform_message = platform_message
        self.reason = reason
        self.hint = hint
        self.status_code = status_code

    @property
    def message(self) -> str | None:
        return self.platform_message

    def __str__(self) -> str:
        what = self.operation or "request"
        text = f"platform rejected {what}"
        if self.status_code is not None:
            text += f" (HTTP {self.status_code})"
        text += f": {self.platform_message!r}" if self.platform_message else ": no message"
        if self.hint:
            text += f". Hint: {self.hint}"
        return text


class ValidationRejected(RejectedError):
    """HTTP 422: the platform named the fields it did not accept."""

    def __init__(
        self,
        platform_message: str | None,
        *,
        field_errors: Mapping[str, Sequence[str]],
        operation: str | None = None,
        status_code: int | None = 422,
    ) -> None:
        fields = ", ".join(sorted(field_errors)) or "none named"
        super().__init__(
            platform_message,
            reason=RejectReason.VALIDATION,
            hint=f"the platform did not accept these fields: {fields}",
            operation=operation,
            status_code=status_code,
        )
        self.field_errors: dict[str, list[str]] = {k: list(v) for k, v in field_errors.items()}


class FieldProblem:
    """One refused field: its contract path and why, never its value."""

    __slots__ = ("field", "reason")

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason

    def __repr__(self) -> str:
        return f"FieldProblem({self.field!r}, {self.reason!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldProblem):
            return NotImplemented
        return (self.field, self.reason) == (other.field, other.reason)

    def __hash__(self) -> int:
        return hash((self.field, self.reason))


class LocalValidationError(ErxError):
    """We refused to send: the platform would reject it, or worse, accept something wrong.

    ``field`` is the first problem's contract path (``patient.post_code``), ``problems`` all
    of them, so a form can highlight every field at once.
    """

    def __init__(self, problems: Sequence[FieldProblem], *, operation: str | None = None) -> None:
        if not problems:
            raise ValueError("LocalValidationError needs at least one problem")
        self.problems = tuple(problems)
        self.field = self.problems[0].field
        text = "; ".join(f"{p.field}: {p.reason}" for p in self.problems)
        super().__init__(f"refused before sending: {text}", operation=operation)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(p.field for p in self.problems)


class CaptureRefusedError(ErxError):
    """Capture mode records full traffic; it must never run outside development."""
