"""Error reports to Sentry (or any service that takes a Sentry DSN), with PHI kept out.

Off unless ``RXROUTE_SENTRY_DSN`` is set. What leaves the process is the exception's type,
its stack (file, function and line; no source lines, which can hold literals), the release, the
environment, the request's method and route template, and the request id tag. What never
does: exception messages and log parameters (a message can quote a name or a date of birth:
``ValueError(f"bad dob {dob}")``), local variables, request URLs, query strings, bodies,
headers and cookies, breadcrumb data (SQL parameters, URLs) and user details. A report is
then less to read than a traceback, but it says where to look, and the request id finds the
rest in rxroute's own logs, which hold ids only.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk

from rxroute import __version__
from rxroute.config import Settings

REDACTED = "[redacted]"

#: Contexts Sentry fills with facts about the machine, not the request: kept.
_KEPT_CONTEXTS = frozenset({"runtime", "os", "device", "trace", "app"})


def _scrub_exceptions(event: dict[str, Any]) -> None:
    for value in (event.get("exception") or {}).get("values") or ():
        if value.get("value"):
            value["value"] = REDACTED
        _scrub_frames(value)
    for thread in (event.get("threads") or {}).get("values") or ():
        _scrub_frames(thread)


def _scrub_frames(holder: dict[str, Any]) -> None:
    for frame in (holder.get("stacktrace") or {}).get("frames") or ():
        for key in ("vars", "pre_context", "context_line", "post_context"):
            frame.pop(key, None)


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry's ``before_send``: the event with every place data could hide emptied."""
    _scrub_exceptions(event)
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        # The message is the log call's format string or structlog event (ids only, by the
        # logging rule); its parameters and the formatted text may carry values.
        logentry.pop("params", None)
        logentry.pop("formatted", None)
    if "message" in event and not isinstance(event["message"], dict):
        event["message"] = REDACTED
    request = event.get("request")
    if isinstance(request, dict):
        event["request"] = {"method": request.get("method")}
    event.pop("user", None)
    event.pop("extra", None)
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        event["contexts"] = {k: v for k, v in contexts.items() if k in _KEPT_CONTEXTS}
    breadcrumbs = event.get("breadcrumbs")
    if isinstance(breadcrumbs, dict):
        for crumb in breadcrumbs.get("values") or ():
            scrub_breadcrumb(crumb)
    return event


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry's ``before_breadcrumb``: category, level and type only; no data, no message."""
    crumb.pop("data", None)
    if crumb.get("message"):
        crumb["message"] = REDACTED
    return crumb


def init_error_reporting(settings: Settings, **options: Any) -> bool:
    """Start reporting when a DSN is set; returns whether it did. ``options`` are for tests
    (e.g. a transport that keeps events in memory)."""
    if settings.sentry_dsn is None:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.environment.value,
        release=f"rxroute@{__version__}",
        # Off by default in the SDK too (send_default_pii); stated here, as the rule is ours.
        include_local_variables=False,
        include_source_context=False,
        max_request_body_size="never",
        # Traces go through OpenTelemetry (see rxroute.observability.tracing).
        traces_sample_rate=0.0,
        before_send=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=scrub_breadcrumb,
        **options,
    )
    return True
