"""The Jinja2 environment shared by every page module."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from rxroute.auth.dependencies import SESSION_COOKIE
from rxroute.notifications.kinds import timeline_label
from rxroute.prescriptions.lifecycle import Status
from rxroute.prescriptions.reference import patient_reference
from rxroute.runtime import get_runtime
from rxroute.timezones import format_display, utc_iso
from rxroute.web.security import csrf_token

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATE_DIR))


#: The context key :func:`render` fills with the configured display zone.
DISPLAY_ZONE = "display_zone"


def _zone(context: Context) -> ZoneInfo:
    zone = context.get(DISPLAY_ZONE)
    if not isinstance(zone, ZoneInfo):
        # A template rendered without :func:`render`: refuse rather than guess a zone.
        raise RuntimeError("pages must be rendered with render(), which sets the display zone")
    return zone


@pass_context
def _localtime(context: Context, value: datetime | None, seconds: bool = False) -> str:
    """``{{ moment|localtime }}``: ``1 Jul 2026, 13:00 BST`` in the configured zone."""
    if value is None:
        return ""
    return format_display(value, _zone(context), seconds=seconds)


@pass_context
def _time_tag(context: Context, value: datetime | None, seconds: bool = False) -> Markup:
    """``{{ moment|time_tag }}``: a ``<time>`` element, local text, exact UTC moment on hover."""
    if value is None:
        return Markup("")
    # Markup.format escapes its arguments.
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(
        utc_iso(value), format_display(value, _zone(context), seconds=seconds)
    )


def _status_label(value: str) -> str:
    try:
        return Status(value).label
    except ValueError:
        return value


templates.env.filters["localtime"] = _localtime
templates.env.filters["time_tag"] = _time_tag
templates.env.filters["utc_iso"] = utc_iso
#: The old name, kept so a template written before the rename still converts (same code).
templates.env.filters["when"] = _localtime
templates.env.filters["status_label"] = _status_label
#: ``{{ prescription|patient_reference }}``: the short reference the pharmacy also sees.
templates.env.filters["patient_reference"] = patient_reference
#: ``{{ notification.kind|email_label }}``: "Email sent to patient: dispensed".
templates.env.filters["email_label"] = timeline_label


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page with the user, CSRF token and flash message in the context."""
    session_token = request.cookies.get(SESSION_COOKIE)
    settings = get_runtime().settings
    full: dict[str, Any] = {
        "csrf_token": csrf_token(settings, session_token) if session_token else "",
        "user": getattr(request.state, "user", None),
        DISPLAY_ZONE: settings.display_zone,
    }
    full.update(context or {})
    return templates.TemplateResponse(request, name, full, status_code=status_code)
