"""Security headers on every response; templates without inline script; HSTS only on https."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.models import Role
from rxroute.runtime import Runtime
from rxroute.web.templating import TEMPLATE_DIR
from tests import factories
from tests.staff_pages import sign_in

#: What every page and API response says (written out, not imported: the test states it).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HSTS_VALUE = "max-age=31536000"
BASE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _directives(policy: str) -> dict[str, list[str]]:
    found = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            found[words[0]] = words[1:]
    return found


def _assert_secure(response: httpx.Response, where: str, *, hsts: bool = False) -> None:
    for name, value in BASE.items():
        assert response.headers.get(name) == value, f"{where}: {name}"
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"{where}: no Content-Security-Policy"
    directives = _directives(policy)
    assert directives["frame-ancestors"] == ["'none'"], where
    # One strict policy everywhere, the API docs included (served locally, no inline code).
    assert policy == CONTENT_SECURITY_POLICY, where
    assert directives["script-src"] == ["'self'"], where
    assert "'unsafe-inline'" not in policy, where
    if hsts:
        assert response.headers.get("Strict-Transport-Security") == HSTS_VALUE, where
    else:
        assert "Strict-Transport-Security" not in response.headers, where


def test_the_page_policy_allows_no_inline_script_or_framing() -> None:
    directives = _directives(CONTENT_SECURITY_POLICY)
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]


def _get_paths(app: FastAPI) -> list[str]:
    """Every GET route, with a random id for each path parameter."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = iterate(app.routes) if iterate is not None else app.routes
    paths = []
    for route in routes:
        if "GET" in (getattr(route, "methods", None) or set()):
            paths.append(re.sub(r"\{[^}]+\}", str(uuid.uuid4()), str(route.path)))
    return paths


async def test_every_get_route_carries_the_headers_signed_in_or_not(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, settings: Settings
) -> None:
    """Whatever each answers (page, redirect, 403, 404, JSON), the headers are on it."""
    from rxroute.app import create_app

    paths = _get_paths(create_app(settings))
    assert len(paths) > 25
    admin = await factories.make_user(session, Role.ADMIN)
    await session.commit()
    for signed_in in (False, True):
        if signed_in:
            await sign_in(client, admin)
        for path in paths:
            for accept in ("text/html", "application/json"):
                response = await client.get(path, headers={"accept": accept})
                _assert_secure(response, f"GET {path} ({accept}, signed in: {signed_in})")


async def test_posts_static_files_errors_and_the_api_carry_them(
    client: httpx.AsyncClient, db: Runtime
) -> None:
    responses = {
        "static file": await client.get("/static/app.js"),
        "missing static file": await client.get("/static/nothing.js"),
        "unknown page": await client.get("/no/such/page", headers={"accept": "text/html"}),
        "API 401": await client.get("/api/v1/prescriptions"),
        "API 422": await client.post("/api/v1/auth/token", json={}),
        "sign-in page post": await client.post("/login", data={"email": "", "password": ""}),
        "webhook refused": await client.post("/webhooks/erx", content=b"{}"),
        "pharmacy link": await client.get("/pharmacy/confirm/not-a-token"),
    }
    for where, response in responses.items():
        _assert_secure(response, where)
    assert responses["static file"].status_code == 200


@pytest.fixture
async def failing_client(db: Runtime, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from rxroute.app import create_app

    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/api/v1/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://rxroute.test") as api:
        yield api


async def test_a_500_carries_them_too(failing_client: httpx.AsyncClient) -> None:
    response = await failing_client.get("/api/v1/boom")
    assert response.status_code == 500
    _assert_secure(response, "500")


async def test_hsts_only_when_the_public_url_is_https(db: Runtime, settings: Settings) -> None:
    from rxroute.app import create_app

    for public_url, hsts in (
        ("https://rxroute.example.com", True),
        ("HTTPS://rxroute.example.com/", True),
        ("http://127.0.0.1:8000", False),
        ("http://rxroute.example.com", False),
    ):
        app = create_app(settings.model_copy(update={"public_url": public_url}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rxroute.test") as api:
            for path in ("/healthz", "/login", "/api/v1/prescriptions", "/static/app.css"):
                _assert_secure(await api.get(path), f"{public_url} {path}", hsts=hsts)


# --- the templates: nothing inline for the policy to refuse ------------------------------


class _InlineFinder(HTMLParser):
    """Inline script, event handlers, inline styles and javascript: URLs in a template."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value or "" for name, value in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("<script> without src")
        if tag == "style":
            self.problems.append("<style> element")
        for name, value in names.items():
            if name.startswith("on"):
                self.problems.append(f"{name}= handler on <{tag}>")
            if name == "style":
                self.problems.append(f"style= on <{tag}>")
            if value.strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL in {name} on <{tag}>")


def _template_problems(text: str) -> list[str]:
    # Jinja syntax is not HTML: blank out tags and expressions, keep the markup.
    markup = re.sub(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", "x", text, flags=re.DOTALL)
    finder = _InlineFinder()
    finder.feed(markup)
    return finder.problems


def test_the_finder_finds_what_the_policy_refuses() -> None:
    """The check itself: each kind of inline code is caught (so a pass means something)."""
    samples = [
        "<script>alert(1)</script>",
        '<button onclick="go()">x</button>',
        '<body onload="{{ x }}">',
        '<p style="color:red">x</p>',
        "<style>p{}</style>",
        '<a href="javascript:go()">x</a>',
        '<a href=" JavaScript:go()">x</a>',
    ]
    for sample in samples:
        assert _template_problems(sample), sample
    assert _template_problems('<script src="/static/app.js" defer></script>') == []


def test_no_template_has_inline_script_handlers_or_styles() -> None:
    templates = sorted(Path(TEMPLATE_DIR).rglob("*.html"))
    assert len(templates) > 20
    problems = {
        str(path.relative_to(TEMPLATE_DIR)): found
        for path in templates
        if (found := _template_problems(path.read_text()))
    }
    assert problems == {}


def test_no_script_builds_markup_or_code_from_strings() -> None:
    """The static scripts set no inline handlers or styles and evaluate no strings, which
    the policy would refuse at run time (a silent break, not an error)."""
    scripts = sorted((Path(TEMPLATE_DIR).parent / "static").glob("*.js"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        for pattern in (
            r"\beval\(",
            r"new Function\(",
            r"\.innerHTML\s*=",
            r"\.outerHTML\s*=",
            r"insertAdjacentHTML",
            r"setAttribute\(\s*['\"](style|on\w+)['\"]",
            r"set(Timeout|Interval)\(\s*['\"]",
        ):
            assert not re.search(pattern, text), f"{script.name}: {pattern}"


# --- /docs works under the same strict policy ----------------------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name: value or "" for name, value in attrs}
        if tag == "script":
            if names.get("src"):
                self.scripts.append(names["src"])
            else:
                self.inline_scripts += 1
        if tag == "link" and names.get("rel") == "stylesheet":
            self.styles.append(names.get("href", ""))


def _allowed(source: str, sources: list[str]) -> bool:
    if source.startswith("/") and not source.startswith("//"):
        return "'self'" in sources
    origin = "/".join(source.split("/")[:3])
    return origin in sources


async def test_the_docs_policy_allows_what_the_docs_page_loads(client: httpx.AsyncClient) -> None:
    """The strict policy allows everything /docs loads: same-origin assets, no inline code."""
    path = "/docs"
    response = await client.get(path)
    assert response.status_code == 200
    _assert_secure(response, path)
    directives = _directives(response.headers["Content-Security-Policy"])
    assets = _Assets()
    assets.feed(response.text)
    assert assets.scripts
    for source in assets.scripts:
        assert _allowed(source, directives["script-src"]), source
    for source in assets.styles:
        assert _allowed(source, directives["style-src"]), source
    assert assets.inline_scripts == 0
