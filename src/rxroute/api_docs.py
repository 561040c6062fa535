"""The API's documentation: ``/docs`` and ``/redoc`` served offline, stable operation ids.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN, so they are
blank pages on a network without internet (a hospital's, a CI runner's). Here their files
come from the installed ``fastapi-offline`` package, mounted at :data:`ASSETS_URL`, and
``/docs`` starts Swagger UI from a static file rather than an inline script, so the page
also works under a Content-Security-Policy that forbids inline script.

Operation ids are ``<tag>-<route name>`` (e.g. ``prescriptions-send``): generated clients
name their methods after them, so they must not change when a path or method does.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, swagger_ui_default_parameters
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.utils import generate_unique_id

#: Swagger UI's and ReDoc's files, as the installed package ships them.
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
</head>
<body>
<div id="swagger-ui" data-config="{html.escape(json.dumps(config))}"></div>
<script src="{root}{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="{root}{SWAGGER_INIT_URL}"></script>
</body>
</html>
"""
    return HTMLResponse(page)


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` from local files; the app must be created with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN-loading pages are not registered."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS_DIR)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _swagger_html(request, app)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
