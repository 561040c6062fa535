"""rxroute's one settings object.

Every knob is an ``RXROUTE_`` environment variable (or a line in ``.env``); ``.env.example``
documents each. Secrets are ``SecretStr`` so they never show up in a repr or a log line. The
demo and the tests run in ``development``, where placeholder secrets are allowed; anywhere
else a placeholder is refused at start-up, naming the variable, so a forgotten secret cannot
reach production (which values count as placeholders: :mod:`rxroute.config_secrets`).
"""

from __future__ import annotations

import enum
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rxroute.config_secrets import (
    DEMO_CSRF_SECRET,
    DEMO_ENCRYPTION_KEY,
    DEMO_ERX_CLIENT_ID,
    DEMO_ERX_CLIENT_SECRET,
    DEMO_EVENTS_SECRET,
    DEMO_LINK_SECRET,
    DEMO_SESSION_SECRET,
    DEMO_WEBHOOK_SECRET,
    SECRETS_NEEDED_ONLY_WITH,
    PreviousKeys,
    holds_secret,
    is_placeholder,
    previous_keys,
    secret_problem,
    secret_texts,
)
from rxroute.regions import DEFAULT_REGION_DISPLAY, RegionDisplay, fallback_display
from rxroute.timezones import DEFAULT_DISPLAY_TIMEZONE, load_zone

#: The stalled-job interval spans at least this many heartbeats.
STALLED_HEARTBEATS = 3
#: A platform call's deadline ends at least this long before its job could count as stalled.
DEADLINE_MARGIN_SECONDS = 5


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class ConfigError(ValueError):
    """A setting is missing or unsafe; the message names the variable and the fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RXROUTE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A refusal's text must not carry the other settings' values: they include secrets,
        # and a start-up traceback ends up in logs.
        hide_input_in_errors=True,
    )

    environment: Environment = Environment.DEVELOPMENT

    # --- database -------------------------------------------------------------------------
    #: Empty means "start the embedded PostgreSQL under ``var_dir/pg``".
    database_url: str = ""
    var_dir: Path = Path("var")
    #: Connections the SQLAlchemy engine of each process keeps, and its ceiling: no overflow,
    #: so a burst waits for a connection rather than opening (and then closing) more.
    db_pool_size: int = Field(default=10, ge=1, le=200)
    #: Check each connection with a round trip before handing it out (SQLAlchemy's
    #: ``pool_pre_ping``, psycopg_pool's ``check``). Off: a connection the server dropped
    #: fails the one request or job that drew it (503, or a retry) and is replaced.
    db_pool_pre_ping: bool = False

    # --- HTTP -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: The URL people and the platform reach rxroute at (links in emails, webhook URL).
    public_url: str = "http://127.0.0.1:8000"

    # --- secrets --------------------------------------------------------------------------
    #: Fernet key(s) encrypting prescriber credentials at rest. Comma-separated: the first
    #: encrypts, all decrypt, so a key can be rotated without a flag day.
    encryption_keys: SecretStr = SecretStr(DEMO_ENCRYPTION_KEY)
    #: Signs session cookies and API bearer tokens (each names a server-side session). Every
    #: purpose has its own key, so one can be rotated (or leak) without touching the others;
    #: each ``*_previous`` list is still accepted for verification while rotating.
    session_secret: SecretStr = SecretStr(DEMO_SESSION_SECRET)
    session_secret_previous: PreviousKeys = []
    #: Signs CSRF tokens (the pages' and the sign-in form's).
    csrf_secret: SecretStr = SecretStr(DEMO_CSRF_SECRET)
    csrf_secret_previous: PreviousKeys = []
    #: Signs the pharmacies' confirmation links (valid for ``pharmacy_link_ttl_hours``).
    link_secret: SecretStr = SecretStr(DEMO_LINK_SECRET)
    link_secret_previous: PreviousKeys = []
    access_token_ttl_seconds: int = Field(default=3600, ge=60)
    #: How long an emailed set-password link (an invitation or a reset) stays usable.
    invitation_hours: int = Field(default=72, ge=1, le=24 * 30)

    # --- regions and channels -------------------------------------------------------------
    #: Which channel serves each region: adding a region served by an existing channel is
    #: configuration, not code. JSON, e.g. ``{"A": "email", "B": "erx"}``.
    region_channels: dict[str, str] = {"A": "email", "B": "erx"}
    #: How each region reads to patients: a name, one line on what happens there, and the
    #: countries/postcode areas it covers (to suggest it from the patient's address). JSON,
    #: e.g. ``{"A": {"name": "Scotland", "explanation": "...", "countries": ["GB"],
    #: "postcode_areas": ["EH", "G"]}}``. A served region left out shows as "Region X".
    region_display: dict[str, RegionDisplay] = DEFAULT_REGION_DISPLAY

    # --- Region B: the e-prescription platform --------------------------------------------
    erx_base_url: str = "http://127.0.0.1:8100"
    erx_token_path: str = "/oauth/token"  # noqa: S105 - a URL path
    erx_api_prefix: str = "/api/v1"
    erx_client_id: str = DEMO_ERX_CLIENT_ID
    erx_client_secret: SecretStr = SecretStr(DEMO_ERX_CLIENT_SECRET)
    #: The clinic's *internal* API ID (994 in the demo), not the dashboard's display ID.
    erx_clinic_id: int | None = None
    erx_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Refresh tokens this many seconds before they expire.
    erx_token_refresh_margin_seconds: int = Field(default=60, ge=0)
    #: Record full requests/responses (secrets and PHI redacted) under ``erx_capture_dir``.
    erx_capture: bool = False
    erx_capture_dir: Path = Path("var/erx-capture")
    erx_send_max_attempts: int = Field(default=8, ge=1, le=50)
    erx_send_backoff_seconds: float = Field(default=2.0, gt=0)
    erx_send_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    #: The caller's IP the platform records for the prescriber.
    erx_prescriber_ip: str = "203.0.113.7"

    # --- webhooks -------------------------------------------------------------------------
    webhook_secret: SecretStr = SecretStr(DEMO_WEBHOOK_SECRET)
    #: The previous secret, accepted too while set, so rotation needs no downtime.
    webhook_secret_previous: SecretStr | None = None
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    webhook_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Inbound event IDs are kept this long for dedupe: far beyond the sender's retry horizon.
    webhook_event_retention_days: int = Field(default=30, ge=1)
    #: Poll the platform about a Region B prescription that has heard nothing for this long.
    reconcile_after_seconds: int = Field(default=900, ge=1)
    #: At most this many reconciliation polls in flight at once (each holds a connection to
    #: the platform; only a poll whose answer changes something takes a database connection,
    #: briefly). 24: against a platform answering in 100 ms a real worker swept 100,000 quiet
    #: ones in 9.3 minutes, where 16 took 13.6 (17.8 before batches overlapped) and so left
    #: no room for a slower platform (bench/bench_reconcile.py --sweep worker,
    #: docs/performance.md "Reconciliation at 100,000").
    reconcile_concurrency: int = Field(default=24, ge=1, le=64)
    #: One reconciliation run sweeps batch after batch until nothing is due or this is spent.
    reconcile_budget_seconds: float = Field(default=50.0, gt=0)

    # --- events out: status changes as Standard Webhooks to the platform -------------------
    #: The default endpoint for rxroute's status events; empty means none (admins may still
    #: add endpoints of their own).
    events_url: str = ""
    #: ``whsec_`` + base64 of 24-64 random bytes: signs the events sent to ``events_url``.
    events_secret: SecretStr = SecretStr(DEMO_EVENTS_SECRET)
    #: Wait before the first retry of an undelivered event; doubles after each failure.
    events_retry_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: Delivered events are deleted this long after they happened.
    events_retention_days: int = Field(default=30, ge=1)

    # --- integrating platforms ------------------------------------------------------------
    #: Answers to POSTs made with an ``Idempotency-Key`` are replayed for this long (at
    #: least a day, as platforms retrying after an outage expect), then deleted.
    idempotency_retention_hours: int = Field(default=24, ge=24, le=24 * 90)

    # --- Region A: email ------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    smtp_from: str = "prescriptions@rxroute.example.com"
    pharmacy_link_ttl_hours: int = Field(default=24 * 28, ge=1)

    # --- patient notifications -------------------------------------------------------------
    #: Email patients when their prescription's status changes (sent, dispensed, action
    #: needed, expired, cancelled, re-routed), through the SMTP settings above. Patients can
    #: unsubscribe from the link in each email.
    patient_notifications: bool = True

    # --- display --------------------------------------------------------------------------
    #: The IANA zone pages show times in (stored times are UTC); the zone is always named.
    display_timezone: str = DEFAULT_DISPLAY_TIMEZONE

    # --- metrics --------------------------------------------------------------------------
    #: When set, ``GET /metrics`` (and a worker's metrics port) needs
    #: ``Authorization: Bearer <token>``; unset, anyone who can reach it may scrape it (keep
    #: it off the public ingress then).
    metrics_token: SecretStr | None = None
    #: Report unhandled errors to Sentry (or a compatible service) at this DSN; unset, off.
    #: Reports carry no PHI: see rxroute/observability/errors.py for what is removed.
    sentry_dsn: SecretStr | None = None

    # --- logging --------------------------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool = True

    # --- worker ---------------------------------------------------------------------------
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    #: Every worker records that it is alive this often.
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0, le=300)
    #: A job whose worker sent no heartbeat for this long is considered stalled and retried:
    #: a SIGKILLed worker's job runs again within about 4/3 of this plus 2 s (42 s by
    #: default; see maintenance/tasks.py).
    stalled_job_seconds: int = Field(default=30, ge=6, le=3600)
    #: Upper bound on one whole call to the platform (every request and retry inside it), so
    #: a call always ends before its job can be taken for stalled and run by another worker.
    platform_call_deadline_seconds: float = Field(default=20.0, gt=0)
    #: Finished jobs (succeeded, failed, cancelled, aborted) are deleted from the job queue's
    #: tables this long after they ended; the facts they acted on live in rxroute's own.
    job_retention_hours: int = Field(default=168, ge=1, le=24 * 366)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        if not value.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError(
                "must be a PostgreSQL URL like "
                "postgresql://user@127.0.0.1:5432/rxroute (or unset it to use the embedded server)"
            )
        return value

    @field_validator(
        "session_secret_previous", "csrf_secret_previous", "link_secret_previous", mode="before"
    )
    @classmethod
    def _parse_previous_keys(cls, value: Any) -> Any:
        return previous_keys(value)

    @field_validator("events_url")
    @classmethod
    def _check_events_url(cls, value: str) -> str:
        from rxroute.events.secrets import check_endpoint_url

        value = value.strip()
        return check_endpoint_url(value) if value else value

    @field_validator("display_timezone")
    @classmethod
    def _check_display_timezone(cls, value: str) -> str:
        return load_zone(value).key

    @field_validator("region_channels")
    @classmethod
    def _check_region_channels(cls, value: dict[str, str]) -> dict[str, str]:
        from rxroute.channels.registry import channel_names

        known = set(channel_names())
        for region, channel in value.items():
            if channel not in known:
                raise ValueError(
                    f"region {region!r} names unknown channel "
                    f"{channel!r}; use one of {sorted(known)}"
                )
        return {region.upper(): channel for region, channel in value.items()}

    @field_validator("region_display")
    @classmethod
    def _check_region_display(cls, value: dict[str, RegionDisplay]) -> dict[str, RegionDisplay]:
        codes = [region.strip().upper() for region in value]
        if any(not code for code in codes) or len(set(codes)) != len(codes):
            raise ValueError("region codes must be non-empty and distinct (case-insensitive)")
        return {region.strip().upper(): display for region, display in value.items()}

    @classmethod
    def secret_settings(cls) -> list[str]:
        """Every secret setting's field name: each field whose type holds ``SecretStr``."""
        return [name for name, field in cls.model_fields.items() if holds_secret(field.annotation)]

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> Settings:
        """Outside development, refuse every secret that is empty (unless optional) or known.

        Walks every ``SecretStr`` field rather than a list of names, so a secret added
        later is checked without anyone remembering to add it here. All problems are named
        in one line, so an operator fixes them in one go.
        """
        if self.environment is Environment.DEVELOPMENT:
            return self
        problems = [
            problem
            for name in self.secret_settings()
            if (
                name not in SECRETS_NEEDED_ONLY_WITH
                or getattr(self, SECRETS_NEEDED_ONLY_WITH[name])
            )
            and (problem := secret_problem(name, secret_texts(getattr(self, name))))
        ]
        if problems:
            raise ValueError(
                "; ".join(problems) + ": set a real secret (placeholders and demo values are "
                "allowed only with RXROUTE_ENVIRONMENT=development)"
            )
        if self.erx_capture:
            raise ValueError(
                "RXROUTE_ERX_CAPTURE records full platform traffic and is refused outside "
                "development; unset it"
            )
        return self

    @model_validator(mode="after")
    def _signing_keys_real_and_separate(self) -> Settings:
        """No signing key (current or previous) is ever empty: it would make what it signs
        forgeable. Outside development each is also a real secret, and no two purposes share
        one (a leaked link key must not forge sessions)."""
        current = {
            "RXROUTE_SESSION_SECRET": self.session_secret,
            "RXROUTE_CSRF_SECRET": self.csrf_secret,
            "RXROUTE_LINK_SECRET": self.link_secret,
        }
        previous = {
            "RXROUTE_SESSION_SECRET_PREVIOUS": self.session_secret_previous,
            "RXROUTE_CSRF_SECRET_PREVIOUS": self.csrf_secret_previous,
            "RXROUTE_LINK_SECRET_PREVIOUS": self.link_secret_previous,
        }
        named: list[tuple[str, SecretStr]] = list(current.items())
        named += [(name, key) for name, keys in previous.items() for key in keys]
        for name, secret in named:
            if not secret.get_secret_value().strip():
                raise ValueError(f"{name} holds an empty key: set a real secret or remove it")
        if self.environment is Environment.DEVELOPMENT:
            return self
        # Placeholders and demo values are refused by the check every secret goes through.
        owners: dict[str, str] = {}
        for name, secret in current.items():
            raw = secret.get_secret_value()
            if raw in owners:
                raise ValueError(
                    f"{name} is the same as {owners[raw]}: give each purpose its own key"
                )
            owners[raw] = name
        return self

    @model_validator(mode="after")
    def _stalled_detection_has_margin(self) -> Settings:
        heartbeat, stalled = self.worker_heartbeat_seconds, self.stalled_job_seconds
        if stalled < STALLED_HEARTBEATS * heartbeat:
            raise ValueError(
                f"RXROUTE_STALLED_JOB_SECONDS ({stalled}) must be at least {STALLED_HEARTBEATS} "
                f"x RXROUTE_WORKER_HEARTBEAT_SECONDS ({heartbeat:g}), so a live worker whose "
                f"heartbeat is late is not taken for dead; raise the first or lower the second"
            )
        deadline = self.platform_call_deadline_seconds
        if deadline > stalled - DEADLINE_MARGIN_SECONDS:
            raise ValueError(
                f"RXROUTE_PLATFORM_CALL_DEADLINE_SECONDS ({deadline:g}) must be at least "
                f"{DEADLINE_MARGIN_SECONDS} s below RXROUTE_STALLED_JOB_SECONDS ({stalled}), so "
                f"a platform call ends before its job can be retried as stalled; lower the "
                f"first or raise the second"
            )
        return self

    @model_validator(mode="after")
    def _webhook_secret_not_empty(self) -> Settings:
        if not self.webhook_secret.get_secret_value().strip():
            raise ValueError(
                "RXROUTE_WEBHOOK_SECRET is empty: unsigned webhooks would be accepted; set it"
            )
        return self

    @model_validator(mode="after")
    def _events_settings_usable(self) -> Settings:
        """With an events URL, the secret must be a real ``whsec_`` secret and, outside
        development, not the demo's or a placeholder, and the URL HTTPS: receivers trust
        what the secret signs."""
        from rxroute.events.secrets import GENERATE_HINT, InvalidSecret, secret_bytes

        if not self.events_url:
            return self
        raw = self.events_secret.get_secret_value().strip()
        name = "RXROUTE_EVENTS_SECRET"
        if not raw:
            raise ValueError(f"{name} is empty but RXROUTE_EVENTS_URL is set; {GENERATE_HINT}")
        try:
            decoded = secret_bytes(raw)
        except InvalidSecret as exc:
            raise ValueError(f"{name}: {exc}") from exc
        if self.environment is Environment.DEVELOPMENT:
            return self
        text = decoded.decode("utf-8", "replace")
        if raw == DEMO_EVENTS_SECRET or is_placeholder(raw) or is_placeholder(text):
            raise ValueError(
                f"{name} still holds the demo or a placeholder secret ({GENERATE_HINT}); "
                "placeholders are allowed only with RXROUTE_ENVIRONMENT=development"
            )
        if not self.events_url.startswith("https://"):
            raise ValueError(
                "RXROUTE_EVENTS_URL must be an https:// URL outside development: events are "
                "signed, not encrypted"
            )
        return self

    @property
    def pg_data_dir(self) -> Path:
        return self.var_dir / "pg"

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url

    @property
    def display_zone(self) -> ZoneInfo:
        """The loaded zone (already validated, and cached by ``ZoneInfo``) for display code."""
        return load_zone(self.display_timezone)

    def channel_for_region(self, region: str) -> str | None:
        return self.region_channels.get(region.upper())

    def region_shown(self, region: str) -> RegionDisplay:
        """How a region reads to patients (its configured display, or "Region X")."""
        code = region.upper()
        return self.region_display.get(code) or fallback_display(code)

    @property
    def webhook_url(self) -> str:
        return self.public_url.rstrip("/") + "/webhooks/erx"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after patching env."""
    return Settings()
