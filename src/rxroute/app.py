"""The FastAPI application: routers, JSON errors, request logs, security headers, health and
readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi.routing
import psycopg
import sentry_sdk
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from procrastinate.exceptions import ConnectorException
from pydantic import BaseModel
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rxroute import __version__
from rxroute.admin.pages import router as admin_pages_router
from rxroute.api_docs import ASSETS_URL, install_docs, operation_id
from rxroute.api_errors import FieldError, error_body
from rxroute.auth.endpoints import router as auth_router
from rxroute.config import Settings, get_settings
from rxroute.db import migrate
from rxroute.db.engine import outage_reason, resolve_database_url
from rxroute.logging import route_words
from rxroute.notifications.pages import router as notifications_pages_router
from rxroute.observability.endpoints import router as metrics_router
from rxroute.observability.tracing import instrument_app
from rxroute.patients.endpoints import router as patients_router
from rxroute.patients.invite import router as patient_invite_router
from rxroute.pharmacies.endpoints import router as pharmacies_router
from rxroute.prescriber.pages import router as prescriber_pages_router
from rxroute.prescribers.endpoints import router as prescribers_router
from rxroute.prescriptions.endpoints import router as prescriptions_router
from rxroute.prescriptions.intake_endpoints import router as prescription_intake_router
from rxroute.runtime import get_runtime, start_runtime, stop_runtime
from rxroute.seed.pages import install as install_demo_pages
from rxroute.support.pages import router as support_pages_router
from rxroute.web.auth_pages import account_router
from rxroute.web.auth_pages import router as auth_pages_router
from rxroute.web.deps import LoginRequired, login_url
from rxroute.web.headers import SecurityHeadersMiddleware, add_security_headers, uses_https
from rxroute.web.patient_pages import router as patient_pages_router
from rxroute.web.pharmacy_pages import router as pharmacy_pages_router
from rxroute.web.request_log import RequestLogMiddleware, logged_path
from rxroute.web.welcome_pages import router as welcome_router
from rxroute.webhooks.receiver import router as webhooks_router

STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"

log = structlog.get_logger(__name__)


def route_paths(app: FastAPI) -> list[str]:
    """Every route's full path (FastAPI 0.137+ includes routers lazily: walk them)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(iterate(app.routes)) if iterate is not None else list(app.routes)
    return [str(getattr(route, "path", "") or "") for route in routes]


def _field_name(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path")]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(field=_field_name(error.get("loc", ())), message=error.get("msg", "invalid"))
        for error in exc.errors()
    ]
    summary = "; ".join(f"{error.field}: {error.message}" for error in errors)
    return JSONResponse(
        status_code=422, content=error_body(f"invalid request: {summary}", errors=errors)
    )


def _wants_html(request: Request) -> bool:
    """Pages get HTML error pages; the API and webhooks always get JSON."""
    path = request.url.path
    if path.startswith(("/api/", "/webhooks/", "/healthz", "/readyz", "/static/", ASSETS_URL)):
        return False
    return "text/html" in request.headers.get("accept", "")


_HEADINGS = {
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Already done",
    413: "Too large",
    422: "Please check what you entered",
    429: "Too many attempts",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if _wants_html(request):
        from rxroute.web.templating import render

        return render(
            request,
            "error.html",
            {
                "status_code": exc.status_code,
                "heading": _HEADINGS.get(exc.status_code, "Something went wrong"),
                "message": exc.detail if exc.status_code != 404 else "There is nothing here.",
            },
            status_code=exc.status_code,
        )
    return JSONResponse(
        status_code=exc.status_code,
        content=error_body(str(exc.detail), errors=getattr(exc, "errors", None)),
        headers=getattr(exc, "headers", None),
    )


#: Seconds a client is asked to wait while the database is out of reach.
RETRY_AFTER_SECONDS = 5


async def _database_error(request: Request, exc: Exception) -> Response:
    """503 with ``Retry-After`` while the database is out of reach.

    Any other database error is a bug: re-raised, it reaches the catch-all 500 handler.
    """
    reason = outage_reason(exc)
    if reason is None:
        raise exc
    log.warning(
        "database_unavailable",
        request_id=getattr(request.state, "request_id", ""),
        path=logged_path(request.url.path, request.app),
        reason=reason,
    )
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    message = "The service cannot reach its database right now; please try again shortly."
    if _wants_html(request):
        from rxroute.web.templating import render

        page = render(
            request,
            "error.html",
            {"status_code": 503, "heading": "Temporarily unavailable", "message": message},
            status_code=503,
        )
        page.headers.update(headers)
        return page
    return JSONResponse(status_code=503, content=error_body(message), headers=headers)


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "")
    log.error("unhandled_error", request_id=request_id, error_type=type(exc).__name__)
    # Reported (when RXROUTE_SENTRY_DSN is set) scrubbed of PHI, tagged with the id the
    # user is shown; a no-op otherwise. Sentry drops the duplicate its own hook may send.
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("request_id", request_id)
        sentry_sdk.capture_exception(exc)
    response = JSONResponse(
        status_code=500,
        content={
            "detail": "internal error; quote this request id to support",
            "request_id": request_id,
        },
    )
    # Answered outside every middleware (Starlette's server-error layer): add them here.
    hsts = bool(getattr(request.app.state, "hsts", False))
    add_security_headers(response.headers, request.url.path, hsts=hsts)
    return response


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(login_url(exc.next_url, exc.notice), status_code=303)


class Readiness(BaseModel):
    """``/readyz``'s answer, 200 or 503 (a probe's, not an API error)."""

    status: str
    migration: str | SkipJsonSchema[None] = None
    reason: str | SkipJsonSchema[None] = None


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owns_runtime = False
        try:
            get_runtime()
        except RuntimeError:
            active = settings or get_settings()
            await start_runtime(active, resolve_database_url(active))
            owns_runtime = True
        yield
        if owns_runtime:
            await stop_runtime()

    app = FastAPI(
        title="rxroute",
        version=__version__,
        description="Route prescriptions to pharmacies by region and track them until dispensed.",
        lifespan=lifespan,
        # Served from installed files by install_docs: FastAPI's own pages need a CDN.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        generate_unique_id_function=operation_id,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled_error)
    for database_error in (SQLAlchemyError, psycopg.Error, ConnectorException):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(LoginRequired, _login_required)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    install_docs(app)
    app.state.hsts = uses_https((settings or get_settings()).public_url)

    # Inside the security headers (added last, so outermost), as the request log was.
    app.add_middleware(RequestLogMiddleware)

    @app.get("/healthz", tags=["health"], name="live", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process is alive (says nothing about the database)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        name="ready",
        summary="Readiness",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready; `reason` says why."}},
    )
    async def readyz() -> JSONResponse:
        """Ready to serve: the database answers and its schema is at (or past) this code's
        latest migration."""
        runtime = get_runtime()
        try:
            async with runtime.engine.connect() as connection:
                has_table = await connection.scalar(
                    text("SELECT to_regclass('alembic_version') IS NOT NULL")
                )
                current = (
                    await connection.scalar(text("SELECT version_num FROM alembic_version"))
                    if has_table
                    else None
                )
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            why = outage_reason(exc) or type(exc).__name__
            return JSONResponse(
                status_code=503,
                content={"status": "unavailable", "reason": f"database unreachable ({why})"},
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        head = migrate.head_revision()
        # A schema ahead of this code is a rollout in progress (migrations run before the new
        # code) or a rollback: this process keeps serving. Only one behind it is not ready.
        if migrate.schema_position(current) == "behind":
            return JSONResponse(
                status_code=503,
                content={
                    "status": "unavailable",
                    "reason": f"migrations at {current}, code expects {head}: run rxroute migrate",
                },
            )
        return JSONResponse(content={"status": "ready", "migration": current})

    app.include_router(auth_router)
    app.include_router(pharmacies_router)
    app.include_router(prescriptions_router)
    app.include_router(patient_invite_router)
    app.include_router(prescribers_router)
    app.include_router(prescription_intake_router)
    app.include_router(patients_router)
    app.include_router(webhooks_router)
    app.include_router(auth_pages_router)
    app.include_router(account_router)
    app.include_router(welcome_router)
    app.include_router(patient_pages_router)
    install_demo_pages(app, settings or get_settings())
    app.include_router(pharmacy_pages_router)
    app.include_router(notifications_pages_router)
    app.include_router(support_pages_router)
    app.include_router(admin_pages_router)
    app.include_router(metrics_router)
    app.include_router(prescriber_pages_router)
    # Outermost, so every response gets them, error pages included.
    app.add_middleware(SecurityHeadersMiddleware, hsts=app.state.hsts)
    instrument_app(app)
    app.state.route_words = route_words(route_paths(app))
    return app


def create_app_from_env() -> FastAPI:
    """The app as ``rxroute serve`` runs it: settings and logging from the environment.

    uvicorn calls this in every web process it starts (``factory=True``); a process started
    with ``--workers N`` is a fresh interpreter and must configure itself.
    """
    from rxroute.heap import settle_heap
    from rxroute.logging import configure_logging
    from rxroute.observability.setup import start_observability

    get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    start_observability(settings)
    app = create_app(settings)
    # Built and imported: what exists now lives as long as the process (rxroute.heap).
    settle_heap()
    return app
