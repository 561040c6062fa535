"""The app's route table, walked through FastAPI's lazily included routers.

Shared by the tests that must cover every route (guards, accessibility), so a route added
later is checked without anyone remembering to list it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fastapi.routing
from fastapi import FastAPI


def routes(app: FastAPI) -> Iterator[Any]:
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    yield from (iterate(app.routes) if iterate is not None else app.routes)


def route_table(app: FastAPI) -> list[tuple[str, str, Any]]:
    """(method, path, route) for every route and method but HEAD."""
    rows = []
    for route in routes(app):
        for method in sorted(getattr(route, "methods", None) or []):
            if method != "HEAD":
                rows.append((method, str(route.path), route))
    return rows
