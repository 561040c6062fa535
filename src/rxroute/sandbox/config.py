"""The sandbox's own configuration model.

The sandbox plays the e-prescription platform, so it must not share rxroute's settings or
models: a shared type would hide exactly the kind of contract drift the sandbox exists to
catch. Accounts, timings and faults all live in one JSON file so a test or a demo can
describe a whole platform in one place.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONFIG_RESOURCE = "default_config.json"


class _Strict(BaseModel):
    # A typo in a fault name must fail loudly instead of silently doing nothing.
    model_config = ConfigDict(extra="forbid")


class OAuthClient(_Strict):
    client_id: str
    client_secret: str


class Clinic(_Strict):
    id: int
    #: The display ID shown on the dashboard; the API refuses it (the case study's lesson 2).
    unique_id: str
    name: str


class Prescriber(_Strict):
    id: int
    name: str
    email: str
    password: str
    secure_pin: str
    active: bool = True
    clinic_ids: list[int] = Field(default_factory=list)
    issuable_clinic_ids: list[int] = Field(default_factory=list)


class Contact(_Strict):
    id: int
    clinic_id: int
    name: str
    email: str
    post_code: str


class WebhookSettings(_Strict):
    url: str | None = None
    #: Development default only; the packaged config sets it explicitly.
    secret: str = "demo-only-webhook-secret"  # noqa: S105


class Timings(_Strict):
    """How fast the simulated platform moves; tests shrink these to stay quick."""

    #: Seconds (sandbox clock) between issuing and signing.
    sign_delay_seconds: float = Field(default=1.0, ge=0)
    #: Seconds (sandbox clock) after issue at which an undispensed prescription expires.
    expire_after_seconds: float = Field(default=28 * 24 * 3600, gt=0)
    #: Delivery tries per webhook event, the first included.
    webhook_max_attempts: int = Field(default=6, ge=1, le=50)
    #: Wait before the first retry; each later wait doubles (2+4+8+16+32 = about a minute).
    webhook_backoff_seconds: float = Field(default=2.0, ge=0)
    webhook_backoff_max_seconds: float = Field(default=60.0, ge=0)
    #: A receiver that has not answered within this many seconds has failed the attempt.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    #: A held-back (reordered) event goes out anyway after this long if no later one comes.
    reorder_hold_seconds: float = Field(default=2.0, ge=0)


class Faults(_Strict):
    """Misbehaviour to inject. API faults hit ``/api/v1/*`` and ``/oauth/token`` only."""

    latency_ms: int = Field(default=0, ge=0, le=120_000)
    #: Share of API requests answered with a 5xx without being processed.
    error_rate: float = Field(default=0.0, ge=0, le=1)
    #: Share of API requests processed and then left unanswered (connection dropped).
    drop_after_processing_rate: float = Field(default=0.0, ge=0, le=1)
    access_token_ttl_seconds: int = Field(default=3600, ge=1)
    session_token_ttl_seconds: int = Field(default=1800, ge=1)
    #: Share of webhook events delivered a second time (same event ID and body).
    webhook_duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    #: Share of webhook events held back and delivered after the next event.
    webhook_reorder_rate: float = Field(default=0.0, ge=0, le=1)
    #: Extra delay before the first delivery try of each event.
    webhook_delay_ms: int = Field(default=0, ge=0, le=600_000)
    #: Share of delivery tries lost on the way (the receiver never sees them; they are retried).
    webhook_drop_rate: float = Field(default=0.0, ge=0, le=1)
    #: Seeds the fault RNGs so a run's faults can be replayed; None draws a fresh seed.
    seed: int | None = None


class SandboxConfig(_Strict):
    comment: str | None = Field(default=None, alias="_comment")
    oauth_clients: list[OAuthClient]
    clinics: list[Clinic]
    prescribers: list[Prescriber]
    contacts: list[Contact]
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    timings: Timings = Field(default_factory=Timings)
    faults: Faults = Field(default_factory=Faults)
    #: Request bodies above this size get 413 before any parsing.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    #: Base of links in the sandbox's emails; None uses the URL the issue request came in on.
    public_url: str | None = None
    #: Keep the platform's prescriptions and mailbox in this JSON file across restarts
    #: (``persist``); None keeps them in memory only.
    state_file: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def with_overrides(
        self, *, webhook_url: str | None = None, **fault_overrides: Any
    ) -> SandboxConfig:
        """A copy with CLI flags applied; re-validated so a bad flag fails like a bad file."""
        data = self.model_dump(by_alias=True)
        if webhook_url is not None:
            data["webhook"]["url"] = webhook_url
        for name, value in fault_overrides.items():
            if value is None:
                continue
            if name in Faults.model_fields:
                data["faults"][name] = value
            elif name in Timings.model_fields:
                data["timings"][name] = value
            else:
                raise ValueError(f"unknown sandbox setting {name!r}")
        return SandboxConfig.model_validate(data)


def load_config(path: Path | None = None) -> SandboxConfig:
    """Read a config file, or the packaged defaults that ``rxroute seed`` is aligned with."""
    if path is None:
        text = resources.files(__package__).joinpath(DEFAULT_CONFIG_RESOURCE).read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return SandboxConfig.model_validate(json.loads(text))
