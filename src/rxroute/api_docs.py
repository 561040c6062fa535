"""The API's documentation: ``/docs`` served offline, stable operation ids.

FastAPI's own ``/docs`` loads Swagger UI from a CDN, so it is a blank page on a network
without internet (a hospital's, a CI runner's). Here Swagger UI's files come from the
installed ``fastapi-offline`` package, mounted at :data:`ASSETS_URL`, and the page starts
Swagger UI from a static file rather than an inline script, so it also works under a
Content-Security-Policy that forbids inline script and inline style. Swagger UI's online
validator badge is off: it would send the document's URL to a third party.

``/redoc`` only redirects to ``/docs``: ReDoc needs inline styles (a CSP exception) and loads
its logo from Redocly's CDN, and Swagger UI already shows every operation and schema.

Operation ids are ``<tag>-<route name>`` (e.g. ``prescriptions-send``): generated clients
name their methods after them, so they must not change when a path or method does.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.utils import generate_unique_id

#: Swagger UI's files, as the installed package ships them.
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
#: The script that starts Swagger UI (in rxroute's own static files).
SWAGGER_INIT_URL = "/static/swagger-init.js"

#: Documents the ``Authorization: Bearer <token>`` header the API reads (see
#: :func:`rxroute.auth.dependencies.current_user`, which does the checking). Added to a
#: router's dependencies it only tells the OpenAPI document, and so Swagger UI's "Authorize"
#: button and generated clients, how to authenticate; it refuses nothing itself.
bearer_auth = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="An access token from `POST /api/v1/auth/token`.",
)

#: Documents an integrating platform's API key (``Authorization: Bearer rxr_...``). The key
#: dependencies (:mod:`rxroute.apiclients.dependencies`) declare it with
#: ``Security(api_key_auth, scopes=[...])``, so each operation's ``security`` names the scope
#: it needs, straight from the dependency that enforces it. Like :data:`bearer_auth` it only
#: documents: it refuses nothing itself.
api_key_auth = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="rxr_...",
    description=(
        "An integrating platform's API key (`rxr_...`, from `rxroute apikey create` or the "
        "admin pages). Each operation lists the scope the key must hold: without it the "
        "answer is 403, with a revoked key 401."
    ),
)


def operation_id(route: APIRoute) -> str:
    """``<first tag>-<route name>``, lower case with hyphens: ``prescriptions-send``.

    Routes left out of the document keep FastAPI's default id (it also names their form
    models), since several pages share a function name.
    """
    if not route.include_in_schema:
        return generate_unique_id(route)
    parts = [str(route.tags[0]), route.name] if route.tags else [route.name]
    return "-".join(parts).replace("_", "-").lower()


def _swagger_html(request: Request, app: FastAPI) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    config = {
        **swagger_ui_default_parameters,
        **(app.swagger_ui_parameters or {}),
        "url": f"{root}{app.openapi_url}",
        "validatorUrl": None,
    }
    title = html.escape(f"{app.title} API")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<link rel="stylesheet" href="{root}{ASSETS_URL}/swagger-ui.css">
<link rel="icon" href="{root}{ASSETS_URL}/favicon.png">
<link rel="stylesheet" href="{root}/static/docs.css">
</head>
<body>
<header class="rx-docs"><h1>{title} reference</h1></header>
<main><div id="swagger-ui" data-config="{html.escape(json.dumps(config))}"></div></main>
<script src="{root}{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="{root}{SWAGGER_INIT_URL}"></script>
</body>
</html>
"""
    return HTMLResponse(page)


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` from local files, and send ``/redoc`` there.

    The app must be created with ``docs_url=None, redoc_url=None`` so that FastAPI's
    CDN-loading pages are not registered.
    """
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS_DIR)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _swagger_html(request, app)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/docs", status_code=308)
