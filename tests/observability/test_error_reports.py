"""Error reports: off without a DSN, and no PHI in what would leave the process."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from rxroute.config import Settings
from rxroute.observability.errors import init_error_reporting

PATIENT_NAME = "Imogen Examplefield"
DATE_OF_BIRTH = "1985-03-07"


class _Kept(Transport):
    """A transport that keeps envelopes in memory: nothing leaves the test."""

    sent: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        _Kept.sent.append(envelope)


@pytest.fixture
def reporting(settings: Settings) -> Iterator[list[Envelope]]:
    _Kept.sent = []
    settings.sentry_dsn = SecretStr("https://0123456789abcdef@errors.example.com/42")
    try:
        assert init_error_reporting(settings, transport=_Kept, default_integrations=True)
        yield _Kept.sent
    finally:
        settings.sentry_dsn = None
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # a disabled client for the rest of the run


def _everything_sent(envelopes: list[Envelope]) -> str:
    parts: list[str] = []
    for envelope in envelopes:
        for item in envelope.items:
            payload: Any = item.payload.json if item.payload.json is not None else None
            parts.append(json.dumps(payload) if payload is not None else str(item.payload.bytes))
    return "\n".join(parts)


def _fails_with_phi(patient_name: str, date_of_birth: str) -> None:
    address = "1 Example Street, Leeds"  # a local variable that must not travel
    raise ValueError(f"cannot send for {patient_name} born {date_of_birth} at {address}")


def test_no_dsn_no_reporting(settings: Settings) -> None:
    assert settings.sentry_dsn is None
    assert init_error_reporting(settings) is False


def test_an_exception_quoting_a_patient_is_reported_without_them(
    reporting: list[Envelope],
) -> None:
    sentry_sdk.add_breadcrumb(
        category="query", message=f"SELECT ... WHERE name = '{PATIENT_NAME}'", data={"x": 1}
    )
    try:
        _fails_with_phi(PATIENT_NAME, DATE_OF_BIRTH)
    except ValueError as exc:
        sentry_sdk.capture_exception(exc)
    logging.getLogger("rxroute.test").error("send failed for %s", PATIENT_NAME)
    sentry_sdk.flush(timeout=5)

    sent = _everything_sent(reporting)
    assert "ValueError" in sent and "_fails_with_phi" in sent, "the report says where"
    for phi in (PATIENT_NAME, DATE_OF_BIRTH, "Example Street"):
        assert phi not in sent, f"{phi!r} left the process"
