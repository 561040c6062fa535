"""The route table: every page POST is CSRF-guarded by its router, every route needs a role.

Walks ``app.routes`` (through FastAPI's lazily included routers) rather than a hand-kept
list, so a route added later is checked without anyone remembering to add it here.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from sqlalchemy.ext.asyncio import AsyncSession

import rxroute
from rxroute.apiclients.dependencies import require_scope, user_or_key
from rxroute.auth.csrf import SAFE_METHODS
from rxroute.auth.dependencies import current_user
from rxroute.config import Settings
from rxroute.models import Role
from rxroute.runtime import Runtime
from rxroute.web.deps import page_user
from rxroute.web.security import CsrfGuard, PreSessionCsrfGuard
from tests import factories
from tests.routes import route_table
from tests.staff_pages import sign_in

#: Routes anyone may call, and why.
PUBLIC = {
    ("GET", "/healthz"): "liveness probe",
    ("GET", "/readyz"): "readiness probe",
    ("GET", "/metrics"): "Prometheus scrape: RXROUTE_METRICS_TOKEN when set, else kept internal",
    ("GET", "/"): "redirects to sign-in or the user's home; shows nothing",
    ("GET", "/login"): "sign-in",
    ("POST", "/login"): "sign-in",
    ("POST", "/logout"): "sign-out (clears the cookie)",
    ("POST", "/api/v1/auth/token"): "sign-in (API)",
    ("POST", "/webhooks/erx"): "webhooks: HMAC-signed by the platform",
    ("GET", "/pharmacy/confirm/{token}"): "pharmacy link: the signed token is the credential",
    ("POST", "/pharmacy/confirm/{token}"): "pharmacy link: the signed token is the credential",
    ("GET", "/welcome/{token}"): "set-password link: the one-time, hashed token is the credential",
    ("POST", "/welcome/{token}"): "set-password link: the one-time, hashed token is the credential",
    (
        "GET",
        "/notifications/unsubscribe/{token}",
    ): "unsubscribe link: shows a form, changes nothing",
    ("POST", "/notifications/unsubscribe/{token}"): "unsubscribe link: the signed token is the "
    "credential",
    ("GET", "/openapi.json"): "API docs",
    ("GET", "/docs"): "API docs",
    ("GET", "/redoc"): "API docs",
}
PUBLIC_PREFIXES = ("/static",)

#: Unsafe page routes not guarded by a router's CSRF dependency, and why.
NO_PAGE_CSRF = {
    ("POST", "/login"): "no session yet: the sign-in form carries its own pre-session token",
    ("POST", "/logout"): "signing out is harmless; the form carries no token yet",
    ("POST", "/api/v1/auth/token"): "API sign-in: a JSON body, no cookie",
    ("POST", "/webhooks/erx"): "HMAC-signed by the platform, no cookie",
    ("POST", "/pharmacy/confirm/{token}"): "the form repeats the link's token (its nonce)",
    ("POST", "/notifications/unsubscribe/{token}"): "the form repeats the link's token (its "
    "nonce), or a mail provider's RFC 8058 one-click POST",
}

#: The page modules whose POSTs the router guards; none may call the check itself.
PAGE_MODULES = (
    "web/patient_pages.py",
    "web/patient_changes.py",
    "support/pages.py",
    "support/change_pages.py",
    "admin/pages.py",
    "admin/pharmacy_confirm.py",
    "notifications/pages.py",
    "admin/audit_pages.py",
    "admin/event_pages.py",
    "admin/api_clients.py",
    "support/event_pages.py",
    "admin/users.py",
    "web/welcome_pages.py",
    "admin/formulary_pages.py",
    "prescriber/pages.py",
    "seed/pages.py",
)


#: Router guards: the session's token, or (pages shown before sign-in) a double-submit cookie.
_GUARDS = (CsrfGuard, PreSessionCsrfGuard)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency callable in the tree, depth first."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


#: The API-key dependencies' checkers (one per scope; see rxroute.apiclients.dependencies):
#: ``user_or_key`` takes a key, or else a signed-in user through ``current_user`` itself
#: (called, not declared, so it is not in the tree); ``require_scope`` takes only a bearer
#: key, never a cookie, so no CSRF applies.
KEY_CHECKERS = tuple(
    f"{factory.__qualname__}.<locals>.checker" for factory in (user_or_key, require_scope)
)


def _authenticates_with_a_key(calls: set[Callable[..., Any]]) -> bool:
    return any(getattr(call, "__qualname__", "") in KEY_CHECKERS for call in calls)


def _roles(call: Callable[..., Any]) -> frozenset[str] | None:
    """The roles a role checker (``page_roles``/``require_roles``) allows, else None."""
    name = getattr(call, "__qualname__", "")
    if not name.endswith(("page_roles.<locals>.checker", "require_roles.<locals>.checker")):
        return None
    allowed = inspect.getclosurevars(call).nonlocals.get("allowed")
    assert isinstance(allowed, set | frozenset), call
    return frozenset(allowed)


def _declared(route: Any) -> list[Any]:
    """The dependencies declared on the route and its routers (not its parameters')."""
    if not isinstance(
        route.original_route if hasattr(route, "original_route") else route,
        fastapi.routing.APIRoute,
    ):
        return []
    return [depends.dependency for depends in route.dependencies]


def _table(app: FastAPI) -> list[tuple[str, str, Any]]:
    return route_table(app)


@pytest.fixture(scope="module")
def app(settings: Settings) -> FastAPI:
    from rxroute.app import create_app

    return create_app(settings)


def test_the_table_is_walked(app: FastAPI) -> None:
    """Lazily included routers are followed: the table has the pages, not just the app's own."""
    paths = {path for _, path, _ in _table(app)}
    for expected in ("/admin/pharmacies/{pharmacy_id}", "/support/search", "/admin/audit"):
        assert expected in paths


def test_every_unsafe_page_route_has_the_csrf_guard_on_its_router(app: FastAPI) -> None:
    unguarded = []
    for method, path, route in _table(app):
        if method in SAFE_METHODS or (method, path) in NO_PAGE_CSRF:
            continue
        if path.startswith("/api/"):
            continue  # the API's own rule: see the next test
        declared = _declared(route)
        guards = [call for call in declared if isinstance(call, _GUARDS)]
        in_tree = [call for call in _calls(route.dependant) if isinstance(call, _GUARDS)]
        if not guards or not in_tree:
            unguarded.append(f"{method} {path}")
    assert unguarded == [], f"page POSTs without the router's CSRF guard: {unguarded}"


def test_unsafe_api_routes_authenticate_through_current_user(app: FastAPI) -> None:
    """The API's rule: a cookie-authenticated unsafe call must send X-CSRF-Token, which
    ``current_user`` checks; a bearer token needs none (a browser never adds it). The key
    dependencies count: see :data:`KEY_CHECKERS`."""
    missing = []
    for method, path, route in _table(app):
        if method in SAFE_METHODS or not path.startswith("/api/") or (method, path) in PUBLIC:
            continue
        calls = set(_calls(route.dependant))
        if current_user not in calls and not _authenticates_with_a_key(calls):
            missing.append(f"{method} {path}")
    assert missing == []


def test_no_page_handler_checks_csrf_itself() -> None:
    """One piece of code per rule: the router's dependency, never a call in a handler."""
    package = Path(rxroute.__file__).parent
    for name in PAGE_MODULES:
        source = (package / name).read_text()
        assert not re.search(r"\brequire_csrf\(", source), name
        assert "csrf_token:" not in source, f"{name} reads the token as a handler parameter"


def test_every_route_needs_a_role_except_the_allow_list(app: FastAPI) -> None:
    open_routes = []
    for method, path, route in _table(app):
        if (method, path) in PUBLIC or path.startswith(PUBLIC_PREFIXES):
            continue
        dependant = getattr(route, "dependant", None)
        calls = set(_calls(dependant)) if dependant is not None else set()
        if not calls & {page_user, current_user} and not _authenticates_with_a_key(calls):
            open_routes.append(f"{method} {path}")
    assert open_routes == [], f"routes anyone may call: {open_routes}"


def test_staff_and_prescriber_pages_need_their_roles_on_the_router(app: FastAPI) -> None:
    wanted = {
        "/admin": frozenset({Role.ADMIN.value}),
        "/support": frozenset({Role.SUPPORT.value, Role.ADMIN.value}),
        "/prescriber": frozenset({Role.PRESCRIBER.value}),
    }
    for method, path, route in _table(app):
        prefix = next((p for p in wanted if path == p or path.startswith(p + "/")), None)
        if prefix is None:
            continue
        declared = _declared(route)
        roles = {_roles(call) for call in declared if call is not None} - {None}
        assert roles == {wanted[prefix]}, f"{method} {path}: {roles}"


def test_the_allow_list_names_only_real_routes(app: FastAPI) -> None:
    table = {(method, path) for method, path, _ in _table(app)}
    assert set(PUBLIC) <= table
    assert set(NO_PAGE_CSRF) <= table


# --- the guard at work, on every guarded route ------------------------------------------

#: Pages an admin may not open (the role check answers first): checked by their own users.
NOT_STAFF = ("/prescriptions", "/prescriber/", "/prescriber", "/demo/")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def test_every_guarded_post_refuses_a_form_without_the_token(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, app: FastAPI
) -> None:
    """Signed in as an admin (who may open every staff page), each guarded POST without
    the token is a 403 and with a wrong one too; nothing reaches the handler."""
    admin = await factories.make_user(session, Role.ADMIN)
    await session.commit()
    await sign_in(client, admin)
    checked = 0
    for method, path, route in _table(app):
        guarded = any(isinstance(call, CsrfGuard) for call in _declared(route))
        if method in SAFE_METHODS or not guarded or path.startswith(NOT_STAFF):
            continue
        url = _concrete(path)
        for data in ({}, {"csrf_token": "forged"}):
            response = await client.request(method, url, data=data)
            assert response.status_code == 403, f"{method} {path} {data}: {response.status_code}"
            assert "did not come from rxroute" in response.text
        checked += 1
    assert checked >= 10


async def test_patient_posts_refuse_a_form_without_the_token(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, app: FastAPI
) -> None:
    patient = await factories.make_patient(session)
    user = await factories.make_user(session, Role.PATIENT, patient=patient)
    await session.commit()
    await sign_in(client, user)
    checked = 0
    for method, path, route in _table(app):
        guarded = any(isinstance(call, CsrfGuard) for call in _declared(route))
        patients = ("/prescriptions", "/demo/")  # /demo/: development's demo drafts
        if method in SAFE_METHODS or not guarded or not path.startswith(patients):
            continue
        response = await client.request(method, _concrete(path), data={"reason": "x"})
        assert response.status_code == 403, f"{method} {path}"
        checked += 1
    assert checked == 4


async def test_prescriber_posts_refuse_a_form_without_the_token(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, app: FastAPI
) -> None:
    prescriber = await factories.make_prescriber(session, db.secret_box)
    user = await factories.make_user(session, Role.PRESCRIBER)
    user.prescriber_id = prescriber.id
    await session.commit()
    await sign_in(client, user)
    checked = 0
    for method, path, route in _table(app):
        guarded = any(isinstance(call, CsrfGuard) for call in _declared(route))
        if method in SAFE_METHODS or not guarded or not path.startswith("/prescriber/"):
            continue
        for data in ({}, {"csrf_token": "forged"}):
            response = await client.request(method, _concrete(path), data=data)
            assert response.status_code == 403, f"{method} {path} {data}: {response.status_code}"
            assert "did not come from rxroute" in response.text
        checked += 1
    assert checked == 2


async def test_signed_out_posts_go_to_sign_in_before_the_form_is_read(
    client: httpx.AsyncClient, db: Runtime, app: FastAPI
) -> None:
    for method, path, route in _table(app):
        guarded = any(isinstance(call, CsrfGuard) for call in _declared(route))
        if method in SAFE_METHODS or not guarded:
            continue
        response = await client.request(method, _concrete(path), data={"csrf_token": "x"})
        assert response.status_code == 303, f"{method} {path}"
        assert response.headers["location"].startswith("/login")


async def test_pre_session_forms_refuse_a_post_without_their_token(
    client: httpx.AsyncClient, db: Runtime, app: FastAPI
) -> None:
    """The welcome form has no session: its router's double-submit guard refuses a post
    without the token (or with a forged one) before the handler looks at the link."""
    checked = 0
    for method, path, route in _table(app):
        guarded = any(isinstance(call, PreSessionCsrfGuard) for call in _declared(route))
        if method in SAFE_METHODS or not guarded:
            continue
        for data in ({}, {"csrf_token": "forged"}):
            response = await client.request(method, _concrete(path), data=data)
            assert response.status_code == 403, f"{method} {path} {data}"
            assert "did not come from rxroute" in response.text
        checked += 1
    assert checked >= 1
