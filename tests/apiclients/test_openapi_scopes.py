"""The OpenAPI document names, per operation, the scope an API key needs.

The scope is read from the dependency that enforces it (the closure of ``user_or_key`` or
``require_scope``), not from a hand-kept list, so an operation added later is checked too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from rxroute.apiclients.scopes import Scope
from rxroute.app import create_app

#: The key dependencies' factories: their checkers close over the scope they enforce.
KEY_CHECKERS = ("user_or_key.<locals>.checker", "require_scope.<locals>.checker")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app()


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _enforced_scopes(dependant: Dependant) -> set[Scope]:
    found = set()
    for call in _calls(dependant):
        if getattr(call, "__qualname__", "").endswith(KEY_CHECKERS):
            scope = inspect.getclosurevars(call).nonlocals["scope"]
            assert isinstance(scope, Scope), call
            found.add(scope)
    return found


def _key_operations(app: FastAPI) -> Iterator[tuple[str, str, set[Scope]]]:
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        scopes = _enforced_scopes(context.dependant)
        if scopes:
            for method in sorted(context.methods):
                yield method, context.path, scopes


def test_every_key_operation_documents_the_scope_it_enforces(app: FastAPI) -> None:
    document = app.openapi()
    checked = []
    for method, path, scopes in _key_operations(app):
        operation = document["paths"][path][method.lower()]
        documented = [alt["apiKey"] for alt in operation.get("security", []) if "apiKey" in alt]
        assert documented == [sorted(s.value for s in scopes)], f"{method} {path}: {documented}"
        # A key refused is a 401 (unknown, revoked) or a 403 (lacking the scope): documented.
        assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"
        checked.append(f"{method} {path}")
    # The walk found the operations this feature wired keys into (and any added since).
    assert {
        "GET /api/v1/prescriptions",
        "GET /api/v1/prescriptions/{prescription_id}",
        "POST /api/v1/prescriptions/{prescription_id}/send",
        "POST /api/v1/prescriptions/{prescription_id}/reroute",
        "POST /api/v1/prescriptions/{prescription_id}/cancel",
        "GET /api/v1/pharmacies",
        "GET /api/v1/prescribers",
    } <= set(checked)


def test_only_key_operations_mention_api_keys(app: FastAPI) -> None:
    """Void is support's alone: no key scope may appear on it (or on any other operation)."""
    document = app.openapi()
    with_keys = {(m, p) for m, p, _ in _key_operations(app)}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            mentions = any("apiKey" in alt for alt in operation.get("security", []))
            assert mentions == ((method.upper(), path) in with_keys), f"{method} {path}"


def test_the_api_key_scheme_is_described(app: FastAPI) -> None:
    scheme = app.openapi()["components"]["securitySchemes"]["apiKey"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert "rxr_" in scheme["bearerFormat"]
