"""The sandbox as an ASGI app: the platform's API, its pharmacy portal and its pages.

The pharmacy portal is added from ``portal``, the HTML pages from ``pages`` and the control
API (``/_sandbox/*``) from ``control``.

Faults and the body-size limit sit in ``SandboxApp.__call__``, outside FastAPI's own
middleware, because dropping a connection needs the server's raw ``send`` (and its
transport) and because an injected fault must look like the network, not like the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from .aimed import DROP, ERROR, REJECT, REJECT_MESSAGE, AimedSpec, operation_of
from .config import Prescriber, SandboxConfig
from .control import add_control_routes
from .http import (
    INVALID_DATA,
    UNAUTHENTICATED,
    BadRequest,
    bearer,
    fail,
    form_body,
    json_body,
    json_response,
    link_base,
    session_token,
)
from .pages import add_page_routes
from .persist import StateFile, save_while_running
from .portal import add_portal_routes
from .records import INVALID_PRESCRIBER, PlatformError
from .state import Sandbox
from .validation import validate_issue

logger = logging.getLogger("rxroute.sandbox.http")


class ConnectionDroppedError(ConnectionError):
    """Raised to the caller when no server transport is at hand to close (in-process tests)."""


def _is_faultable(path: str) -> bool:
    return path == "/oauth/token" or path == "/api/v1" or path.startswith("/api/v1/")


class SandboxApp(FastAPI):
    """FastAPI plus the network-level behaviour of the simulated platform."""

    sandbox: Sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        sandbox = self.sandbox
        sandbox.ensure_ticker()
        sandbox.tick()
        buffered = await self._buffer_body(scope, receive, send)
        if buffered is None:
            return
        if not _is_faultable(scope["path"]):
            await super().__call__(scope, buffered, send)
            return
        # Taken on arrival, before any sleep, so concurrent calls meet armed faults in order.
        aimed = sandbox.aimed.take(operation_of(scope["method"], scope["path"]))
        faults = sandbox.faults
        rng = sandbox.api_rng
        if faults.latency_ms:
            sandbox.counters.injected_latency += 1
            await asyncio.sleep(faults.latency_ms / 1000)
        # Draw both numbers every time so one rate does not shift the other's sequence, and
        # an aimed fault does not shift the random faults of the calls after it.
        error_draw, drop_draw = rng.random(), rng.random()
        error_status = rng.choice((500, 502, 503)) if error_draw < faults.error_rate else None
        if aimed is not None:
            await self._aimed_fault(aimed, scope, buffered, send)
            return
        if error_status is not None:
            sandbox.counters.injected_errors += 1
            await self._injected_error(error_status, send)
            return
        if drop_draw < faults.drop_after_processing_rate:
            sandbox.counters.injected_drops += 1
            await self._process_then_drop(scope, buffered, send)
            return
        await super().__call__(scope, buffered, send)

    async def _buffer_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read the whole body up to the limit, so an oversized one is refused before parsing."""
        limit = self.sandbox.config.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await json_response(400, {"success": False, "message": "Bad Content-Length."})(
                        scope, receive, send
                    )
                    return None
                if declared > limit:
                    await self._too_large(scope, receive, send)
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # Client went away before sending the body: nothing to answer.
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.sandbox.config.max_body_bytes
        response = fail(f"Request body too large (limit {limit} bytes).", 413)
        await response(scope, receive, send)

    async def _aimed_fault(
        self, aimed: AimedSpec, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """An armed fault decides this call alone: no random error or drop on top of it."""
        logger.info("aimed fault fired", extra={"operation": aimed.operation, "fault": aimed.fault})
        if aimed.latency_ms:
            await asyncio.sleep(aimed.latency_ms / 1000)
        if aimed.fault == ERROR:
            await self._injected_error(aimed.status_code, send)
        elif aimed.fault == DROP:
            await self._process_then_drop(scope, receive, send)
        elif aimed.fault == REJECT:
            self.sandbox.counters.business_errors += 1
            await fail(REJECT_MESSAGE)(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _injected_error(self, status_code: int, send: Send) -> None:
        # The platform's front door answers 502/503 in HTML, its app 500 in JSON: both happen.
        if status_code == 502:
            body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            content_type = b"text/html; charset=utf-8"
        else:
            message = "Server Error" if status_code == 500 else "Service Unavailable"
            body = json.dumps({"success": False, "message": message}).encode()
            content_type = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status_code,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _process_then_drop(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Do the work, then vanish: the caller cannot know whether it happened."""

        async def swallow(message: Message) -> None:
            return None

        await super().__call__(scope, receive, swallow)
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        close = getattr(transport, "close", None)
        if callable(close):
            close()
            # Let the server notice the lost connection, so it does not try to answer.
            for _ in range(3):
                await asyncio.sleep(0)
            return
        raise ConnectionDroppedError("sandbox dropped the connection after processing")


# --- the app ---------------------------------------------------------------------------------


def create_app(config: SandboxConfig) -> SandboxApp:
    """A fresh platform with its own in-memory state: nothing survives a restart, unless
    ``config.state_file`` names a file to keep it in (see ``persist``)."""
    sandbox = Sandbox(config)
    state = StateFile(Path(config.state_file)) if config.state_file else None
    if state is not None:
        state.load(sandbox)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sandbox.ensure_ticker()
        saving = (
            asyncio.get_running_loop().create_task(save_while_running(state, sandbox))
            if state is not None
            else None
        )
        try:
            yield
        finally:
            if saving is not None:
                saving.cancel()
                await asyncio.gather(saving, return_exceptions=True)
            await sandbox.aclose()

    app = SandboxApp(
        title="rxroute provider sandbox",
        description="A simulator of the e-prescription platform, for development and tests.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.sandbox = sandbox

    def authed(request: Request) -> Prescriber:
        access, session = bearer(request), session_token(request)
        prescriber = (
            sandbox.authenticate(access, session) if access is not None and session else None
        )
        if prescriber is None:
            sandbox.counters.unauthenticated += 1
            raise PlatformError(UNAUTHENTICATED, status_code=401)
        return prescriber

    def expire_after() -> float:
        return sandbox.timings.expire_after_seconds

    # --- error shapes -------------------------------------------------------------------------

    @app.exception_handler(PlatformError)
    async def platform_error(request: Request, exc: PlatformError) -> Response:
        if exc.status_code == 200:
            sandbox.counters.business_errors += 1
        return fail(exc.message, exc.status_code)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> Response:
        body: dict[str, Any] = {"success": False, "message": exc.message}
        if exc.errors is not None:
            body["errors"] = exc.errors
        return json_response(exc.status_code, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {404: "Not found.", 405: "Method not allowed."}
        return fail(messages.get(exc.status_code, str(exc.detail)), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def request_validation(request: Request, exc: RequestValidationError) -> Response:
        return json_response(422, {"success": False, "message": INVALID_DATA})

    # --- OAuth and login ----------------------------------------------------------------------

    @app.post("/oauth/token")
    async def oauth_token(request: Request) -> Response:
        try:
            form = await form_body(request)
        except BadRequest:
            return json_response(400, {"error": "invalid_request"})
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type"})
        token = sandbox.grant_token(form.get("client_id", ""), form.get("client_secret", ""))
        if token is None:
            return json_response(401, {"error": "invalid_client"})
        return json_response(
            200,
            {
                "access_token": token.value,
                "token_type": "bearer",
                "expires_in": sandbox.faults.access_token_ttl_seconds,
            },
        )

    @app.post("/api/v1/login")
    async def login(request: Request) -> Response:
        access_value = bearer(request)
        access = sandbox.valid_access(access_value) if access_value is not None else None
        if access is None:
            sandbox.counters.unauthenticated += 1
            return fail(UNAUTHENTICATED, 401)
        payload = await json_body(request)
        errors: dict[str, list[str]] = {}
        for key in ("email", "password"):
            if not isinstance(payload.get(key), str) or not payload[key]:
                errors[key] = [f"The {key} field is required."]
        if errors:
            sandbox.counters.validation_errors += 1
            raise BadRequest(422, INVALID_DATA, errors)
        session = sandbox.login(access, payload["email"], payload["password"])
        if session is None:
            sandbox.counters.business_errors += 1
            return fail(INVALID_PRESCRIBER)
        return json_response(
            200,
            {
                "success": True,
                "data": {
                    "token": session.value,
                    "expires_in": sandbox.faults.session_token_ttl_seconds,
                    "prescriber": {"id": session.prescriber_id},
                },
            },
        )

    # --- the API ------------------------------------------------------------------------------

    @app.get("/api/v1/clinics")
    async def clinics(request: Request) -> Response:
        prescriber = authed(request)
        listed = [
            sandbox.clinics[i].model_dump() for i in prescriber.clinic_ids if i in sandbox.clinics
        ]
        return json_response(200, {"success": True, "data": {"clinics": listed}})

    @app.get("/api/v1/contacts")
    async def contacts(request: Request) -> Response:
        prescriber = authed(request)
        wanted = request.query_params.get("clinic_id")
        listed = [
            {"id": c.id, "name": c.name, "email": c.email, "post_code": c.post_code}
            for c in sandbox.contacts.values()
            if c.clinic_id in prescriber.clinic_ids
            and (wanted is None or str(c.clinic_id) == wanted)
        ]
        return json_response(200, {"success": True, "data": {"contacts": listed}})

    @app.post("/api/v1/prescriptions")
    async def issue(request: Request) -> Response:
        prescriber = authed(request)
        payload = await json_body(request)
        errors = validate_issue(payload)
        if errors:
            sandbox.counters.validation_errors += 1
            raise BadRequest(422, INVALID_DATA, errors)
        prescription = sandbox.issue(prescriber, payload, link_base(request))
        return json_response(
            200,
            {
                "success": True,
                "message": "Prescription issued.",
                "data": {"prescription": prescription.public(sandbox.clock, expire_after())},
            },
        )

    @app.get("/api/v1/prescriptions")
    async def lookup(request: Request) -> Response:
        prescriber = authed(request)
        found = sandbox.find_by_ref(prescriber, request.query_params.get("client_ref_id"))
        listed = [p.public(sandbox.clock, expire_after()) for p in found]
        return json_response(200, {"success": True, "data": {"prescriptions": listed}})

    @app.get("/api/v1/prescriptions/{prescription_id}")
    async def show(request: Request, prescription_id: str) -> Response:
        prescription = sandbox.visible_to(authed(request), prescription_id)
        public = prescription.public(sandbox.clock, expire_after())
        return json_response(200, {"success": True, "data": {"prescription": public}})

    @app.post("/api/v1/prescriptions/{prescription_id}/void")
    async def void(request: Request, prescription_id: str) -> Response:
        prescription = sandbox.visible_to(authed(request), prescription_id)
        sandbox.void(prescription)
        public = prescription.public(sandbox.clock, expire_after())
        return json_response(
            200,
            {"success": True, "message": "Prescription voided.", "data": {"prescription": public}},
        )

    add_portal_routes(app, sandbox)
    add_page_routes(app, sandbox)
    add_control_routes(app, sandbox)
    return app
