"""Server-rendered pages: plain HTML so they work with no JavaScript and a screen reader."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(
    loader=PackageLoader("rxroute.sandbox", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, status_code: int, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(**context)
    # Portal pages carry a bearer-like token in the URL: keep them out of caches and referrers.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(html, status_code=status_code, headers=headers)
