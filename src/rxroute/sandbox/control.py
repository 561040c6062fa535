"""The control API (``/_sandbox/*``): what tests and the demo use to steer the platform.

Kept apart from the platform's own API because it is not part of the contract: it is never
subject to faults, needs no authentication, and may change with the sandbox's needs.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError

from . import reports
from .aimed import OPERATIONS, AimedFaultError, parse_spec
from .http import INVALID_DATA, BadRequest, fail, field_errors, json_body, json_response
from .state import Sandbox


def add_control_routes(app: FastAPI, sandbox: Sandbox) -> None:
    """Register every ``/_sandbox/*`` route on ``app``, acting on ``sandbox``."""

    def expire_after() -> float:
        return sandbox.timings.expire_after_seconds

    async def control_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        return await json_body(request)

    def settings_error(exc: ValidationError) -> Response:
        errors = field_errors(exc)
        return json_response(422, {"success": False, "message": INVALID_DATA, "errors": errors})

    @app.get("/_sandbox/faults")
    async def get_faults() -> Response:
        return json_response(200, sandbox.faults.model_dump())

    @app.put("/_sandbox/faults")
    async def put_faults(request: Request) -> Response:
        try:
            return json_response(
                200, sandbox.update_faults(await control_json(request)).model_dump()
            )
        except ValidationError as exc:
            return settings_error(exc)

    @app.get("/_sandbox/faults/next")
    async def get_aimed() -> Response:
        return json_response(200, {"armed": [a.as_dict() for a in sandbox.aimed.armed()]})

    @app.post("/_sandbox/faults/next")
    async def arm_aimed(request: Request) -> Response:
        try:
            spec = parse_spec(await control_json(request))
        except AimedFaultError as exc:
            return json_response(422, {"success": False, "message": str(exc), "errors": exc.errors})
        armed = sandbox.aimed.arm(spec)
        listed = [a.as_dict() for a in sandbox.aimed.armed()]
        return json_response(200, {"fault": armed.as_dict(), "armed": listed})

    @app.delete("/_sandbox/faults/next")
    async def clear_aimed(request: Request) -> Response:
        operation = request.query_params.get("operation")
        if operation is not None and operation not in OPERATIONS:
            message = f"Unknown operation {operation!r}; use one of {', '.join(OPERATIONS)}."
            return json_response(422, {"success": False, "message": message})
        cleared = sandbox.aimed.clear(operation)
        listed = [a.as_dict() for a in sandbox.aimed.armed()]
        return json_response(200, {"cleared": cleared, "armed": listed})

    @app.get("/_sandbox/timings")
    async def get_timings() -> Response:
        return json_response(200, sandbox.timings.model_dump())

    @app.put("/_sandbox/timings")
    async def put_timings(request: Request) -> Response:
        try:
            return json_response(
                200, sandbox.update_timings(await control_json(request)).model_dump()
            )
        except ValidationError as exc:
            return settings_error(exc)

    @app.get("/_sandbox/webhook")
    async def get_webhook() -> Response:
        return json_response(200, sandbox.webhook.model_dump())

    @app.put("/_sandbox/webhook")
    async def put_webhook(request: Request) -> Response:
        try:
            return json_response(
                200, sandbox.update_webhook(await control_json(request)).model_dump()
            )
        except ValidationError as exc:
            return settings_error(exc)

    @app.get("/_sandbox/clock")
    async def get_clock() -> Response:
        return json_response(
            200, {"now": sandbox.clock.iso(), "offset_seconds": sandbox.clock.offset}
        )

    @app.post("/_sandbox/clock/advance")
    async def advance_clock(request: Request) -> Response:
        payload = await control_json(request)
        seconds = payload.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise BadRequest(422, INVALID_DATA, {"seconds": ["A number of seconds >= 0."]})
        sandbox.clock.advance(float(seconds))
        sandbox.tick()
        return json_response(
            200, {"now": sandbox.clock.iso(), "offset_seconds": sandbox.clock.offset}
        )

    @app.get("/_sandbox/stats")
    async def stats() -> Response:
        return json_response(200, reports.stats(sandbox))

    @app.post("/_sandbox/reset")
    async def reset() -> Response:
        await sandbox.reset()
        return json_response(200, {"success": True, "message": "Sandbox state cleared."})

    @app.get("/_sandbox/accounts")
    async def accounts() -> Response:
        return json_response(200, reports.accounts(sandbox))

    @app.get("/_sandbox/mailbox")
    async def mailbox_json() -> Response:
        return json_response(200, {"messages": [m.as_dict() for m in sandbox.mailbox]})

    @app.get("/_sandbox/deliveries")
    async def deliveries_json() -> Response:
        return json_response(
            200,
            {
                "deliveries": [a.as_dict() for a in sandbox.dispatcher.attempts],
                "pending": sandbox.dispatcher.pending,
            },
        )

    @app.get("/_sandbox/events")
    async def events_json() -> Response:
        return json_response(200, {"events": [e.summary() for e in sandbox.dispatcher.events]})

    @app.post("/_sandbox/wait-idle")
    async def wait_idle(request: Request) -> Response:
        payload = await control_json(request)
        timeout = payload.get("timeout", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise BadRequest(422, INVALID_DATA, {"timeout": ["A number of seconds >= 0."]})
        idle = await sandbox.dispatcher.drain(min(float(timeout), 120.0))
        return json_response(200, {"idle": idle, "pending": sandbox.dispatcher.pending})

    @app.get("/_sandbox/prescriptions")
    async def all_prescriptions() -> Response:
        listed = [p.public(sandbox.clock, expire_after()) for p in sandbox.prescriptions.values()]
        return json_response(200, {"prescriptions": listed})

    @app.get("/_sandbox/prescriptions/{prescription_id}")
    async def one_prescription(prescription_id: str) -> Response:
        prescription = sandbox.get(prescription_id)
        body = prescription.public(sandbox.clock, expire_after())
        body["portal_url"] = sandbox.portal_link(prescription)
        body["token_used"] = prescription.token_used
        body["pharmacy_group"] = prescription.pharmacy_group
        return json_response(200, {"success": True, "data": {"prescription": body}})

    @app.post("/_sandbox/prescriptions/{prescription_id}/{action}")
    async def act(prescription_id: str, action: str) -> Response:
        prescription = sandbox.get(prescription_id)
        if action == "print":
            sandbox.print_(prescription)
        elif action == "dispense":
            sandbox.dispense(prescription)
        elif action == "expire":
            sandbox.expire(prescription)
        elif action == "void":
            sandbox.void(prescription)
        else:
            return fail("Unknown action; use print, dispense, expire or void.", 404)
        public = prescription.public(sandbox.clock, expire_after())
        return json_response(200, {"success": True, "data": {"prescription": public}})
