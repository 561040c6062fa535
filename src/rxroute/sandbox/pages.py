"""Server-rendered pages: plain HTML so they work with no JavaScript and a screen reader.

The home page, the mailbox, the webhook deliveries, the list of prescriptions (what the
platform holds, with each one's portal link) and the faults page. The faults page is the
control API's ``PUT /_sandbox/faults`` and ``POST /_sandbox/faults/next`` as forms, for
someone trying the demo without curl: the same ``Faults`` model and the same ``parse_spec``
validate what it posts, so a setting the API refuses the page refuses with the same words.

The sandbox has no sign-in (neither has its control API), but a form post is the one request
another site's page could make a browser send here: a POST from another origin is refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

from . import reports
from .aimed import ERROR, KINDS, OPERATIONS, AimedFaultError, parse_spec
from .http import BadRequest, field_errors, form_body
from .state import Sandbox

_env = Environment(
    loader=PackageLoader("rxroute.sandbox", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

#: The faults page's fields, in the ``Faults`` model's order, with what each one does.
FAULT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("latency_ms", "Latency (ms)", "Added to every API call before it is answered."),
    (
        "error_rate",
        "Error rate (0 to 1)",
        "Share of API calls answered 500, 502 or 503 without being processed.",
    ),
    (
        "drop_after_processing_rate",
        "Drop rate (0 to 1)",
        "Share of API calls processed, then left unanswered (the connection is closed).",
    ),
    ("access_token_ttl_seconds", "Access token lifetime (s)", "OAuth tokens granted from now."),
    ("session_token_ttl_seconds", "Session token lifetime (s)", "Prescriber logins from now."),
    (
        "webhook_duplicate_rate",
        "Webhook duplicate rate (0 to 1)",
        "Share of events delivered twice.",
    ),
    (
        "webhook_reorder_rate",
        "Webhook reorder rate (0 to 1)",
        "Share of events held back and sent after the next one.",
    ),
    ("webhook_delay_ms", "Webhook delay (ms)", "Wait before each event's first delivery try."),
    (
        "webhook_drop_rate",
        "Webhook drop rate (0 to 1)",
        "Share of delivery tries lost on the way (retried).",
    ),
    ("seed", "Seed (empty: random)", "Makes every random decision repeatable."),
)


def render(template: str, status_code: int, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(**context)
    # Portal pages carry a bearer-like token in the URL: keep them out of caches and referrers.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(html, status_code=status_code, headers=headers)


def same_origin(request: Request) -> bool:
    """Whether a form post came from the sandbox's own pages (or from a client that says
    nothing, such as curl). A browser names the requesting site in ``Sec-Fetch-Site``; one
    that does not send it names the origin, unless the page's no-referrer policy made that
    ``null``, which then proves nothing and is refused."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = urlsplit(str(request.base_url))
    theirs = urlsplit(origin)
    return (theirs.scheme, theirs.netloc) == (own.scheme, own.netloc)


def _aimed_payload(form: dict[str, str]) -> dict[str, Any]:
    """The arming form as the JSON the control API takes: whole numbers where they parse
    (``parse_spec`` names a field that does not), and a status code only for an error."""
    payload: dict[str, Any] = {"operation": form.get("operation"), "fault": form.get("fault")}
    names = ["count", "latency_ms"] + (["status_code"] if form.get("fault") == ERROR else [])
    for name in names:
        raw = form.get(name, "").strip()
        if raw:
            payload[name] = int(raw) if raw.isdigit() else raw
    return payload


def add_page_routes(app: FastAPI, sandbox: Sandbox) -> None:
    """Register the HTML pages on ``app``, showing (and, for faults, changing) ``sandbox``."""

    def expire_after() -> float:
        return sandbox.timings.expire_after_seconds

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Response:
        return render(
            "index.html",
            200,
            stats=reports.stats(sandbox),
            faults=sandbox.faults,
            armed=sandbox.aimed.armed(),
            webhook=sandbox.webhook,
        )

    @app.get("/mailbox", response_class=HTMLResponse)
    async def mailbox_page() -> Response:
        return render("mailbox.html", 200, messages=list(reversed(sandbox.mailbox)))

    @app.get("/deliveries", response_class=HTMLResponse)
    async def deliveries_page() -> Response:
        attempts = [a.as_dict() for a in reversed(sandbox.dispatcher.attempts)]
        return render("deliveries.html", 200, attempts=attempts, webhook=sandbox.webhook)

    @app.get("/prescriptions", response_class=HTMLResponse)
    async def prescriptions_page() -> Response:
        rows = []
        for prescription in reversed(list(sandbox.prescriptions.values())):
            public = prescription.public(sandbox.clock, expire_after())
            contact = sandbox.contacts.get(prescription.contact_id)
            prescriber = sandbox.prescribers.get(prescription.prescriber_id)
            rows.append(
                {
                    **public,
                    "pharmacy": contact.name if contact else str(prescription.contact_id),
                    "prescriber": prescriber.name if prescriber else "unknown",
                    "portal_url": sandbox.portal_link(prescription),
                }
            )
        return render("prescriptions.html", 200, prescriptions=rows)

    def faults_page(
        status_code: int = 200,
        *,
        errors: dict[str, list[str]] | None = None,
        values: dict[str, str] | None = None,
        aimed_errors: dict[str, list[str]] | None = None,
        aimed_values: dict[str, str] | None = None,
        notice: str | None = None,
    ) -> Response:
        current = {k: "" if v is None else str(v) for k, v in sandbox.faults.model_dump().items()}
        return render(
            "faults.html",
            status_code,
            fields=FAULT_FIELDS,
            values={**current, **(values or {})},
            errors=errors or {},
            armed=sandbox.aimed.armed(),
            operations=OPERATIONS,
            kinds=KINDS,
            aimed_errors=aimed_errors or {},
            aimed_values=aimed_values or {"operation": "issue", "fault": "reject", "count": "1"},
            notice=notice,
        )

    def refused(message: str, status_code: int) -> Response:
        return render("message.html", status_code, title="Not changed", message=message)

    async def posted_form(request: Request) -> dict[str, str] | Response:
        if not same_origin(request):
            return refused("This form only accepts posts from the sandbox's own pages.", 403)
        try:
            return await form_body(request)
        except BadRequest as exc:
            return refused(exc.message, exc.status_code)

    notices = {
        "saved": "Fault settings saved.",
        "armed": "Aimed fault armed.",
        "cleared": "Aimed faults cleared.",
    }

    @app.get("/faults", response_class=HTMLResponse)
    async def faults_get(request: Request) -> Response:
        return faults_page(notice=notices.get(request.query_params.get("done", "")))

    @app.post("/faults", response_class=HTMLResponse)
    async def faults_post(request: Request) -> Response:
        form = await posted_form(request)
        if isinstance(form, Response):
            return form
        changes: dict[str, Any] = {
            name: form[name].strip() for name, _, _ in FAULT_FIELDS if name in form
        }
        if changes.get("seed") == "":
            changes["seed"] = None
        if str(changes.get("seed")) == str(sandbox.faults.seed):
            # Unchanged: saving the form must not restart the random sequence.
            changes.pop("seed", None)
        try:
            sandbox.update_faults(changes)
        except ValidationError as exc:
            return faults_page(422, errors=field_errors(exc), values=form)
        return RedirectResponse("/faults?done=saved", status_code=303)

    @app.post("/faults/next", response_class=HTMLResponse)
    async def aimed_post(request: Request) -> Response:
        form = await posted_form(request)
        if isinstance(form, Response):
            return form
        try:
            spec = parse_spec(_aimed_payload(form))
        except AimedFaultError as exc:
            return faults_page(422, aimed_errors=exc.errors, aimed_values=form)
        sandbox.aimed.arm(spec)
        return RedirectResponse("/faults?done=armed", status_code=303)

    @app.post("/faults/next/clear", response_class=HTMLResponse)
    async def aimed_clear(request: Request) -> Response:
        form = await posted_form(request)
        if isinstance(form, Response):
            return form
        sandbox.aimed.clear()
        return RedirectResponse("/faults?done=cleared", status_code=303)
