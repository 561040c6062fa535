"""Admin pages for API clients: list, create (key shown once), rotate and revoke (each
confirmed first), every action in the audit trail, admins only, CSRF on every POST."""

from __future__ import annotations

import html
import json
import re

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients.keys import KEY_PREFIX, key_digest
from rxroute.apiclients.scopes import Scope
from rxroute.models import AdminAuditEvent, ApiClient, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.apiclients.helpers import bearer, make_api_key
from tests.staff_pages import admin as admin  # a fixture
from tests.staff_pages import as_admin as as_admin  # a fixture
from tests.staff_pages import csrf_for, sign_in

_KEY = re.compile(r'id="api-key"[^>]*value="(rxr_[^"]+)"')


async def _stored(session: AsyncSession, name: str) -> ApiClient | None:
    session.expire_all()
    return await session.scalar(select(ApiClient).where(ApiClient.name == name))


async def _events(session: AsyncSession) -> list[AdminAuditEvent]:
    session.expire_all()
    return list(await session.scalars(select(AdminAuditEvent).order_by(AdminAuditEvent.seq)))


def _shown_key(page: str) -> str:
    found = _KEY.search(page)
    assert found, "no key on the page"
    return found.group(1)


async def _create(
    as_admin: httpx.AsyncClient, name: str, *scopes: str, token: str | None = None
) -> httpx.Response:
    token = token or await csrf_for(as_admin, "/admin/api-clients/new")
    return await as_admin.post(
        "/admin/api-clients/new",
        data={"csrf_token": token, "name": name, "scopes": list(scopes)},
    )


async def test_create_shows_the_key_once_and_the_list_only_its_prefix(
    as_admin: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    admin_id = admin.id
    index = await as_admin.get("/admin")
    assert 'href="/admin/api-clients"' in index.text, "linked from the admin home"

    created = await _create(as_admin, "Acme Health", "prescriptions:read", "pharmacies:read")
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    key = _shown_key(created.text)
    assert key.startswith(KEY_PREFIX)
    assert "never again" in created.text and 'data-copy="api-key"' in created.text

    stored = await _stored(session, "Acme Health")
    assert stored is not None
    assert stored.key_hash == key_digest(key)
    assert stored.scopes == ["prescriptions:read", "pharmacies:read"]
    assert stored.created_by_id == admin_id
    stored_id, prefix, digest = stored.id, stored.key_prefix, stored.key_hash

    listed = await as_admin.get("/admin/api-clients")
    assert listed.status_code == 200
    assert key not in listed.text and prefix in listed.text
    row = listed.text.split(f'id="api-client-{stored_id}"')[1].split("</tr>")[0]
    assert "never" in row and "active" in row

    used = await as_admin.get("/api/v1/prescriptions", headers=bearer(key))
    assert used.status_code == 200
    row = (await as_admin.get("/admin/api-clients")).text.split(f'id="api-client-{stored_id}"')[1]
    assert "never" not in row.split("</tr>")[0], "the list shows when it was last used"

    [event] = await _events(session)
    assert (event.entity_type, event.action, event.actor_user_id) == (
        "api_client",
        "created",
        admin_id,
    )
    assert event.changes["scopes"]["after"] == "prescriptions:read, pharmacies:read"
    assert key not in json.dumps(event.changes)
    assert digest not in json.dumps(event.changes)


async def test_form_errors_keep_the_input_and_create_nothing(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    token = await csrf_for(as_admin, "/admin/api-clients/new")
    no_scopes = await _create(as_admin, "Acme Health", token=token)
    assert no_scopes.status_code == 422
    assert 'value="Acme Health"' in no_scopes.text
    assert "tick at least one scope" in no_scopes.text

    bad_name = await _create(as_admin, "!!bad", "prescriptions:send", token=token)
    assert bad_name.status_code == 422
    assert 'value="!!bad"' in bad_name.text
    assert re.search(r'value="prescriptions:send"\s+checked', bad_name.text), "ticks are kept"
    assert "letters, digits" in html.unescape(bad_name.text)

    forged_scope = await _create(as_admin, "Acme Health", "prescriptions:delete", token=token)
    assert forged_scope.status_code == 422
    assert "unknown scope" in html.unescape(forged_scope.text)

    assert (await _create(as_admin, "Acme Health", "pharmacies:read")).status_code == 201
    taken = await _create(as_admin, "Acme Health", "pharmacies:read", token=token)
    assert taken.status_code == 422
    assert "already exists" in html.unescape(taken.text)
    assert KEY_PREFIX not in taken.text.split("<form")[0]
    assert await session.scalar(select(func.count()).select_from(ApiClient)) == 1
    assert len(await _events(session)) == 1


async def test_rotate_asks_first_then_shows_the_new_key_once(
    as_admin: httpx.AsyncClient,
    session: AsyncSession,
    admin: User,
    client: httpx.AsyncClient,
) -> None:
    admin_id = admin.id
    old = await make_api_key(session, Scope.PRESCRIPTIONS_READ, name="acme")
    stored = await _stored(session, "acme")
    assert stored is not None
    old_prefix, client_id = stored.key_prefix, stored.id

    confirm = await as_admin.get(f"/admin/api-clients/{client_id}/rotate")
    assert confirm.status_code == 200
    assert "stops working" in confirm.text and 'id="confirm-rotate"' in confirm.text
    assert (await as_admin.get("/api/v1/prescriptions", headers=bearer(old))).status_code == 200

    token = await csrf_for(as_admin, "/admin/api-clients")
    rotated = await as_admin.post(
        f"/admin/api-clients/{client_id}/rotate", data={"csrf_token": token}
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    new = _shown_key(rotated.text)
    assert new != old
    assert (await client.get("/api/v1/prescriptions", headers=bearer(old))).status_code == 401
    assert (await client.get("/api/v1/prescriptions", headers=bearer(new))).status_code == 200

    [event] = await _events(session)
    assert (event.action, event.entity_id, event.actor_user_id) == ("rotated", client_id, admin_id)
    assert event.changes["key_prefix"]["before"] == old_prefix
    assert new not in json.dumps(event.changes)


async def test_revoke_asks_first_and_stops_the_key(
    as_admin: httpx.AsyncClient,
    session: AsyncSession,
    admin: User,
    client: httpx.AsyncClient,
) -> None:
    key = await make_api_key(session, Scope.PRESCRIPTIONS_READ, name="acme")
    stored = await _stored(session, "acme")
    assert stored is not None
    client_id = stored.id

    confirm = await as_admin.get(f"/admin/api-clients/{client_id}/revoke")
    assert confirm.status_code == 200 and 'id="confirm-revoke"' in confirm.text
    assert (await client.get("/api/v1/prescriptions", headers=bearer(key))).status_code == 200

    token = await csrf_for(as_admin, "/admin/api-clients")
    revoked = await as_admin.post(
        f"/admin/api-clients/{client_id}/revoke", data={"csrf_token": token}
    )
    assert revoked.status_code == 303
    page = await as_admin.get(revoked.headers["location"])
    assert "acme revoked" in page.text
    row = page.text.split(f'id="api-client-{client_id}"')[1].split("</tr>")[0]
    assert "revoked" in row and "Rotate key" not in row
    assert (await client.get("/api/v1/prescriptions", headers=bearer(key))).status_code == 401

    # A revoked client has nothing left to confirm; posting anyway changes and records nothing.
    again = await as_admin.get(f"/admin/api-clients/{client_id}/revoke")
    assert "already revoked" in again.text and 'id="confirm-revoke"' not in again.text
    await as_admin.post(f"/admin/api-clients/{client_id}/revoke", data={"csrf_token": token})
    no_rotation = await as_admin.post(
        f"/admin/api-clients/{client_id}/rotate", data={"csrf_token": token}
    )
    assert no_rotation.status_code == 409

    events = await _events(session)
    assert [(e.action, e.changes) for e in events] == [
        ("revoked", {"revoked": {"before": False, "after": True}})
    ]
    audit_page = await as_admin.get("/admin/audit", params={"entity": "api_client"})
    assert "acme" in audit_page.text and "revoked" in audit_page.text
    assert "Api client changes" in audit_page.text


async def test_unknown_clients_are_404(as_admin: httpx.AsyncClient) -> None:
    missing = "/admin/api-clients/00000000-0000-4000-8000-000000000000"
    assert (await as_admin.get(f"{missing}/rotate")).status_code == 404
    token = await csrf_for(as_admin, "/admin/api-clients")
    assert (await as_admin.post(f"{missing}/revoke", data={"csrf_token": token})).status_code == 404


@pytest.mark.parametrize("role", [Role.PATIENT, Role.SUPPORT])
async def test_only_admins(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime, role: Role
) -> None:
    patient = await factories.make_patient(session) if role is Role.PATIENT else None
    user = await factories.make_user(session, role, patient=patient)
    await session.commit()
    await sign_in(client, user)
    for path in ("/admin/api-clients", "/admin/api-clients/new"):
        response = await client.get(path, headers={"accept": "text/html"})
        assert response.status_code == 403, path
    response = await client.post(
        "/admin/api-clients/new", data={"name": "sneaky", "scopes": "pharmacies:read"}
    )
    assert response.status_code == 403
    assert await session.scalar(select(func.count()).select_from(ApiClient)) == 0


async def test_posts_need_the_csrf_token(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_api_key(session, name="acme")
    stored = await _stored(session, "acme")
    assert stored is not None
    stored_id, prefix = stored.id, stored.key_prefix
    for path in (
        "/admin/api-clients/new",
        f"/admin/api-clients/{stored_id}/rotate",
        f"/admin/api-clients/{stored_id}/revoke",
    ):
        for token in ("", "forged"):
            response = await as_admin.post(
                path, data={"csrf_token": token, "name": "x", "scopes": "pharmacies:read"}
            )
            assert response.status_code == 403, path
    after = await _stored(session, "acme")
    assert after is not None and after.revoked_at is None
    assert after.key_prefix == prefix
    assert await _events(session) == []
