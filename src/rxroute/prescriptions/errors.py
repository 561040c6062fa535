"""Errors of the prescription service, mapped to HTTP answers by the endpoints."""

from __future__ import annotations


class PrescriptionError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(PrescriptionError):
    """Missing, or not the caller's: the same answer, so existence does not leak."""

    status_code = 404


class Conflict(PrescriptionError):
    status_code = 409


class InvalidChoice(PrescriptionError):
    status_code = 422


class ChannelRefused(PrescriptionError):
    """The channel refused an action (e.g. voiding a dispensed prescription)."""

    status_code = 409


class ChannelUnavailable(PrescriptionError):
    status_code = 503
