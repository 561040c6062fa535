"""The catcher's web view: see what rxroute sent, click the pharmacy link, open the PDF.

Everything shown comes from received mail and is untrusted: it is HTML-escaped by Jinja's
autoescaping, HTML bodies render only inside a sandboxed ``srcdoc`` iframe (no scripts, no
same-origin access), only http(s) links are made clickable, and the pages carry a strict
Content-Security-Policy as a second fence.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import DictLoader, Environment, select_autoescape
from markupsafe import Markup, escape
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from rxroute.mailcatcher.faults import FailureError, FailurePlan, parse_failure
from rxroute.mailcatcher.store import MessageStore, StoredMessage

__all__ = ["create_app", "message_json"]

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""

_LAYOUT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{% block title %}rxroute mail catcher{% endblock %}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
 table { border-collapse: collapse; width: 100%; }
 th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #ddd; }
 pre { white-space: pre-wrap; word-break: break-word; background: #f6f7f9; padding: .8rem; }
 iframe { width: 100%; height: 28rem; border: 1px solid #ccc; }
 dt { font-weight: 600; } dd { margin: 0 0 .4rem 0; }
 .muted { color: #666; }
</style></head>
<body><header><nav aria-label="Mail catcher"><a href="/">All messages</a></nav></header>
<main>{% block body %}{% endblock %}</main></body></html>
"""

_INDEX = """{% extends "layout.html" %}
{% block body %}
<h1>Mail catcher</h1>
<p class="muted">{{ messages|length }} message(s), newest first. SMTP on port {{ smtp_port }}.</p>
{% if armed %}<p><strong>Staged failures</strong> for the next messages:
{% for f in armed %}{{ f.mode }} ({{ f.remaining }} left){{ ", " if not loop.last }}
{%- endfor %}.
<span class="muted">Clear with DELETE /api/faults.</span></p>{% endif %}
{% if messages %}
<table><thead><tr><th>#</th><th>Received (UTC)</th><th>From</th><th>To</th><th>Subject</th>
<th>Attachments</th></tr></thead><tbody>
{% for m in messages %}
<tr><td>{{ m.id }}</td><td>{{ m.received_at.strftime("%Y-%m-%d %H:%M:%S") }}</td>
<td>{{ m.from_header or m.envelope_from }}</td>
<td>{{ m.to_header or m.envelope_to|join(", ") }}</td>
<td><a href="/messages/{{ m.id }}">{{ m.subject or "(no subject)" }}</a></td>
<td>{{ m.attachments|length }}</td></tr>
{% endfor %}
</tbody></table>
{% else %}<p>No messages yet.</p>{% endif %}
{% endblock %}
"""

_MESSAGE = """{% extends "layout.html" %}
{% block title %}{{ m.subject }}{% endblock %}
{% block body %}
<h1>{{ m.subject or "(no subject)" }}</h1>
<dl>
<dt>From</dt><dd>{{ m.from_header }}
 <span class="muted">(envelope {{ m.envelope_from }})</span></dd>
<dt>To</dt><dd>{{ m.to_header }}
 <span class="muted">(envelope {{ m.envelope_to|join(", ") }})</span></dd>
<dt>Received</dt><dd>{{ m.received_at.isoformat() }}</dd>
</dl>
<h2>Attachments</h2>
{% if m.attachments %}<ul>
{% for a in m.attachments %}
<li><a href="/messages/{{ m.id }}/attachments/{{ loop.index0 }}">{{ a.filename }}</a>
<span class="muted">{{ a.content_type }}, {{ a.data|length }} bytes</span></li>
{% endfor %}</ul>{% else %}<p class="muted">None.</p>{% endif %}
{% if links %}<h2>Links</h2><ul>
{% for href in links %}
<li><a href="{{ href }}" rel="noopener noreferrer" target="_blank">{{ href }}</a></li>
{% endfor %}
</ul>{% endif %}
{% if m.text_body is not none %}<h2>Text</h2><pre>{{ m.text_body|linkify }}</pre>{% endif %}
{% if m.html_body is not none %}<h2>HTML</h2>
<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer"
 srcdoc="{{ html_doc }}" title="HTML body"></iframe>{% endif %}
<p><a href="/messages/{{ m.id }}/raw">Raw message</a></p>
{% endblock %}
"""


def _linkify(text: str) -> Markup:
    """Escape ``text`` and wrap its http(s) URLs in links, all without trusting it."""
    out: list[str] = []
    position = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        end = match.start() + len(url)
        out.append(str(escape(text[position : match.start()])))
        out.append(
            f'<a href="{escape(url)}" rel="noopener noreferrer" target="_blank">{escape(url)}</a>'
        )
        position = end
    out.append(str(escape(text[position:])))
    return Markup("".join(out))  # noqa: S704 - every piece above was escaped


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        for name, value in attrs:
            if name == "href" and value and _URL.fullmatch(value.strip()):
                self.links.append(value.strip())


def _links(message: StoredMessage) -> list[str]:
    """http(s) links from both bodies, deduplicated, in order of appearance."""
    found: list[str] = []
    if message.html_body:
        collector = _LinkCollector()
        collector.feed(message.html_body)
        collector.close()
        found.extend(collector.links)
    if message.text_body:
        found.extend(m.group(0).rstrip(_TRAILING) for m in _URL.finditer(message.text_body))
    return list(dict.fromkeys(found))


def message_json(message: StoredMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "received_at": message.received_at.isoformat(),
        "from": message.from_header,
        "to": message.to_header,
        "envelope_from": message.envelope_from,
        "envelope_to": list(message.envelope_to),
        "subject": message.subject,
        "text": message.text_body,
        "html": message.html_body,
        "links": _links(message),
        "attachments": [
            {
                "index": index,
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "size": len(attachment.data),
                "url": f"/messages/{message.id}/attachments/{index}",
            }
            for index, attachment in enumerate(message.attachments)
        ],
    }


def _content_disposition(kind: str, filename: str) -> str:
    ascii_name = "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in filename
    )
    return f"{kind}; filename=\"{ascii_name or 'attachment'}\"; filename*=UTF-8''{quote(filename)}"


def create_app(
    store: MessageStore, *, smtp_port: int | None = None, faults: FailurePlan | None = None
) -> FastAPI:
    """The web view and JSON API; ``faults`` is the plan the SMTP side consumes."""
    plan = faults if faults is not None else FailurePlan()
    app = FastAPI(title="rxroute mail catcher", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Environment(
        loader=DictLoader({"layout.html": _LAYOUT, "index.html": _INDEX, "message.html": _MESSAGE}),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    templates.filters["linkify"] = _linkify

    class _SecurityHeaders(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            response = await call_next(request)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            if response.headers.get("content-type", "").startswith("text/html"):
                response.headers.setdefault("Content-Security-Policy", _CSP)
            return response

    app.add_middleware(_SecurityHeaders)

    def _message_or_404(message_id: int) -> StoredMessage:
        message = store.get(message_id)
        if message is None:
            raise HTTPException(status_code=404, detail="no such message")
        return message

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        messages = list(reversed(store.all()))
        page = templates.get_template("index.html").render(
            messages=messages, smtp_port=smtp_port, armed=plan.armed()
        )
        return HTMLResponse(page)

    @app.get("/messages/{message_id}", response_class=HTMLResponse)
    def show(message_id: int) -> HTMLResponse:
        message = _message_or_404(message_id)
        # Links inside the sandboxed frame open in a new tab rather than inside the frame.
        html_doc = '<base target="_blank">' + message.html_body if message.html_body else ""
        page = templates.get_template("message.html").render(
            m=message, links=_links(message), html_doc=html_doc
        )
        return HTMLResponse(page)

    @app.get("/messages/{message_id}/attachments/{index}")
    def attachment(message_id: int, index: int) -> Response:
        message = _message_or_404(message_id)
        if not 0 <= index < len(message.attachments):
            raise HTTPException(status_code=404, detail="no such attachment")
        item = message.attachments[index]
        # Only PDFs open in the browser; anything else (HTML, SVG) downloads, so an
        # attachment can never run script on this origin.
        inline = item.content_type == "application/pdf"
        media_type = item.content_type if inline else "application/octet-stream"
        disposition = _content_disposition("inline" if inline else "attachment", item.filename)
        return Response(
            content=item.data,
            media_type=media_type,
            headers={"Content-Disposition": disposition},
        )

    @app.get("/messages/{message_id}/raw")
    def raw(message_id: int) -> Response:
        message = _message_or_404(message_id)
        return Response(
            content=message.raw,
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": _content_disposition("inline", "message.eml")},
        )

    @app.get("/api/messages")
    def api_messages() -> JSONResponse:
        return JSONResponse([message_json(m) for m in reversed(store.all())])

    @app.get("/api/messages/{message_id}")
    def api_message(message_id: int) -> JSONResponse:
        return JSONResponse(message_json(_message_or_404(message_id)))

    @app.delete("/api/messages", status_code=204)
    def api_clear() -> Response:
        store.clear()
        return Response(status_code=204)

    def faults_json() -> dict[str, Any]:
        return {"armed": [f.as_dict() for f in plan.armed()], "fired": plan.fired()}

    @app.get("/api/faults")
    def api_faults() -> JSONResponse:
        return JSONResponse(faults_json())

    @app.post("/api/faults", status_code=201)
    async def api_arm_fault(request: Request) -> JSONResponse:
        try:
            payload = json.loads(await request.body())
        except (UnicodeDecodeError, ValueError, RecursionError):
            return JSONResponse(
                {"detail": 'malformed JSON; send {"mode": "refuse_permanent", "count": 1}'},
                status_code=400,
            )
        try:
            mode, count = parse_failure(payload)
        except FailureError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        staged = plan.arm(mode, count)
        return JSONResponse({"fault": staged.as_dict(), **faults_json()}, status_code=201)

    @app.delete("/api/faults", status_code=204)
    def api_clear_faults() -> Response:
        plan.clear()
        return Response(status_code=204)

    return app
