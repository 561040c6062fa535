"""Admin: integrating platforms' API clients. List, create, rotate and revoke their keys.

Included in the admin router, whose dependencies check the admin role and every POST's CSRF
token. The rules (names, scopes, one key shown once) are :mod:`rxroute.apiclients.service`'s,
shared with ``rxroute apikey``; this module adds the pages and the audit trail: every
creation, rotation and revocation is recorded with the admin who did it, never with the key.

A new key is shown once, on the answer to the POST that made it (``Cache-Control:
no-store``, never in a URL): the list shows only each key's prefix. Rotating and revoking
ask first, on a confirm page.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rxroute.admin import audit
from rxroute.apiclients import service
from rxroute.apiclients.scopes import Scope, parse_scopes
from rxroute.auth.dependencies import SessionDep
from rxroute.models import ApiClient, AuditAction, User
from rxroute.web.deps import AdminPageUser
from rxroute.web.templating import render

router = APIRouter(include_in_schema=False)

BASE = "/admin/api-clients"

#: What each scope lets a key do, for the form's checkboxes.
SCOPE_HINTS = {
    Scope.PATIENTS_WRITE: "Create and update patients by the platform's ID; invite them.",
    Scope.PRESCRIPTIONS_WRITE: "Create prescriptions.",
    Scope.PRESCRIPTIONS_READ: "List and read every prescription, with its history.",
    Scope.PRESCRIPTIONS_SEND: "Send, re-route and cancel prescriptions for the patient.",
    Scope.PHARMACIES_READ: "Search the accepted pharmacies.",
    Scope.PRESCRIBERS_READ: "List the prescribers with their ids and external ids.",
}

FLASHES = {
    "revoked": "{name} revoked: its key stopped working.",
}


def _field_message(error: service.ApiClientError) -> str:
    """The message without its ``field:`` prefix (the form shows it next to the field)."""
    return error.message.removeprefix(f"{error.field}: ")


async def _client(session: SessionDep, client_id: uuid.UUID) -> ApiClient:
    client = await session.get(ApiClient, client_id)
    if client is None:
        raise HTTPException(status_code=404, detail="no such API client")
    return client


def _key_page(request: Request, issued: service.IssuedKey, *, created: bool) -> HTMLResponse:
    page = render(
        request,
        "admin/api_client_key.html",
        {"client": issued.client, "key": issued.plain_key, "created": created},
        status_code=201 if created else 200,
    )
    page.headers["Cache-Control"] = "no-store"  # the key is on this page, once
    return page


# --- list -------------------------------------------------------------------------------


@router.get("/api-clients", response_class=HTMLResponse)
async def api_clients(
    request: Request,
    session: SessionDep,
    user: AdminPageUser,
    done: Annotated[str, Query(max_length=20)] = "",
    who: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    clients = await service.list_clients(session)
    flash = None
    if done in FLASHES:
        named = next((c.name for c in clients if str(c.id) == who), "The API client")
        flash = FLASHES[done].format(name=named)
    return render(request, "admin/api_clients.html", {"clients": clients, "flash": flash})


# --- create -----------------------------------------------------------------------------


def _form_page(
    request: Request,
    *,
    name: str = "",
    chosen: list[str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "admin/api_client_form.html",
        {
            "values": {"name": name},
            "chosen": chosen or [],
            "errors": errors or {},
            "scopes": [(scope.value, SCOPE_HINTS[scope]) for scope in Scope],
        },
        status_code=status_code,
    )


@router.get("/api-clients/new", response_class=HTMLResponse)
async def new_api_client(request: Request, user: AdminPageUser) -> HTMLResponse:
    return _form_page(request)


async def create_audited(
    session: SessionDep, actor: User, name: str, scopes: list[Scope]
) -> service.IssuedKey:
    issued = await service.create_client(session, name=name, scopes=scopes, created_by_id=actor.id)
    audit.record(session, actor.id, issued.client, None, action=AuditAction.CREATED)
    return issued


@router.post("/api-clients/new", response_model=None)
async def create_api_client(request: Request, session: SessionDep, user: AdminPageUser) -> Response:
    submitted = await request.form(max_files=0, max_fields=20)
    raw_name = submitted.get("name", "")
    name = raw_name if isinstance(raw_name, str) else ""
    chosen = [value for value in submitted.getlist("scopes") if isinstance(value, str)][:20]
    errors: dict[str, str] = {}
    try:
        service.check_name(name)
    except service.ApiClientError as exc:
        errors["name"] = _field_message(exc)
    try:
        scopes = parse_scopes(chosen)
    except ValueError as exc:
        errors["scopes"] = "tick at least one scope" if not chosen else str(exc)
        scopes = []
    if not errors:
        try:
            issued = await create_audited(session, user, name, scopes)
        except service.ApiClientError as exc:
            errors[exc.field] = _field_message(exc)
        else:
            return _key_page(request, issued, created=True)
    return _form_page(request, name=name[:200], chosen=chosen, errors=errors, status_code=422)


# --- rotate and revoke: a confirm page, then the POST -----------------------------------


@router.get("/api-clients/{client_id}/rotate", response_class=HTMLResponse)
async def confirm_rotate(
    request: Request, session: SessionDep, user: AdminPageUser, client_id: uuid.UUID
) -> HTMLResponse:
    client = await _client(session, client_id)
    return render(request, "admin/api_client_confirm.html", {"client": client, "action": "rotate"})


@router.post("/api-clients/{client_id}/rotate", response_model=None)
async def rotate_api_client(
    request: Request, session: SessionDep, user: AdminPageUser, client_id: uuid.UUID
) -> Response:
    client = await _client(session, client_id)
    before = audit.snapshot(client)
    try:
        issued = await service.rotate_client(session, client.name)
    except service.ApiClientError as exc:
        raise HTTPException(status_code=exc.status_code, detail=_field_message(exc)) from exc
    audit.record(session, user.id, issued.client, before, action=AuditAction.ROTATED)
    return _key_page(request, issued, created=False)


@router.get("/api-clients/{client_id}/revoke", response_class=HTMLResponse)
async def confirm_revoke(
    request: Request, session: SessionDep, user: AdminPageUser, client_id: uuid.UUID
) -> HTMLResponse:
    client = await _client(session, client_id)
    return render(request, "admin/api_client_confirm.html", {"client": client, "action": "revoke"})


@router.post("/api-clients/{client_id}/revoke", response_model=None)
async def revoke_api_client(
    request: Request, session: SessionDep, user: AdminPageUser, client_id: uuid.UUID
) -> Response:
    client = await _client(session, client_id)
    before = audit.snapshot(client)
    revoked = await service.revoke_client(session, client.name)
    # Revoking twice changes nothing, so records nothing.
    audit.record(session, user.id, revoked, before, action=AuditAction.REVOKED)
    return RedirectResponse(f"{BASE}?done=revoked&who={client_id}", 303)
