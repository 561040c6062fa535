"""The Jinja2 environment shared by every page module."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from rxroute.auth.dependencies import SESSION_COOKIE
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import get_runtime
from rxroute.web.security import csrf_token

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATE_DIR))


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%d %b %Y, %H:%M:%S UTC")


def _status_label(value: str) -> str:
    try:
        return Status(value).label
    except ValueError:
        return value


templates.env.filters["when"] = _when
templates.env.filters["status_label"] = _status_label


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page with the user, CSRF token and flash message in the context."""
    session_token = request.cookies.get(SESSION_COOKIE)
    settings = get_runtime().settings
    full: dict[str, Any] = {
        "csrf_token": csrf_token(settings, session_token) if session_token else "",
        "user": getattr(request.state, "user", None),
    }
    full.update(context or {})
    return templates.TemplateResponse(request, name, full, status_code=status_code)
