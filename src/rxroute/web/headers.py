"""Security headers on every response: one ASGI middleware, one policy per kind of page.

The pages carry patient details and the pharmacy's confirmation link is a credential in the
URL, so every response says:

* ``Content-Security-Policy``: scripts, styles, images and fetches only from rxroute itself,
  no inline script or style (the templates have none: a test keeps it so), no plugins, no
  ``<base>`` rewriting, forms post only to rxroute, and no framing (``frame-ancestors``).
* ``X-Content-Type-Options: nosniff``, so an upload or a JSON body is never run as script.
* ``Referrer-Policy: no-referrer``, so a link followed from a page never carries its URL
  (a pharmacy link's token, a prescription id) to another site.
* ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
* ``Strict-Transport-Security`` when the public URL is https (never on a plain-http
  development setup, where it would make the browser refuse the site for a year).

The interactive API docs (``/docs``) keep the same strict policy: Swagger UI is served from
the installed package and started by a static script (see :mod:`rxroute.api_docs`), so no
page needs an exception.

A header a route set itself is kept (``setdefault``).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The policy for every page and API response.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

#: One year, the usual minimum for HSTS.
HSTS_VALUE = "max-age=31536000"


def uses_https(public_url: str) -> bool:
    return public_url.strip().lower().startswith("https://")


def security_headers(path: str, *, hsts: bool) -> list[tuple[str, str]]:
    """The headers for a response to ``path``."""
    headers = [
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
    ]
    if hsts:
        headers.append(("Strict-Transport-Security", HSTS_VALUE))
    return headers


def add_security_headers(target: MutableHeaders, path: str, *, hsts: bool) -> None:
    """Set each header unless the response already set it."""
    for name, value in security_headers(path, hsts=hsts):
        target.setdefault(name, value)


class SecurityHeadersMiddleware:
    """Pure ASGI: adds :func:`security_headers` to every HTTP response start.

    Pure ASGI rather than ``BaseHTTPMiddleware`` so streamed and file responses pass
    through untouched apart from their headers.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message), path, hsts=self.hsts)
            await send(message)

        await self.app(scope, receive, send_with_headers)
