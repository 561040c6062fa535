"""The admin audit trail: who changed which pharmacy or prescriber, before and after.

Recorded in the same transaction as the change, shown on each page's History and on the
audit list, and never with a secret's value.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin import service
from rxroute.models import AdminAuditEvent, Pharmacy, Prescriber, Role, User
from rxroute.runtime import Runtime
from tests import factories
from tests.admin.importing import import_csv
from tests.staff_pages import csrf_for, sign_in

PIN = "482913"
PASSWORD_TYPED = "platform-pass-Quokka-77"
LOGIN = "dr.login-secret@example.com"
HEADER = "name,address_line1,address_line2,town,postcode,region,email,platform_contact_id,active"


@pytest.fixture
async def admin(session: AsyncSession, db: Runtime) -> User:
    user = await factories.make_user(session, Role.ADMIN, email="audit-admin@example.com")
    await session.commit()
    return user


async def _events(session: AsyncSession) -> list[AdminAuditEvent]:
    """Fresh from the database (the pages changed it on their own sessions)."""
    session.expire_all()
    return list(await session.scalars(select(AdminAuditEvent).order_by(AdminAuditEvent.seq)))


def _pharmacy_form(token: str, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": token,
        "name": "Audit Pharmacy",
        "address_line1": "4 Park Row",
        "address_line2": "",
        "town": "Leeds",
        "postcode": "LS1 5AB",
        "region": "B",
        "email": "",
        "platform_contact_id": "7002",
        "active": "yes",
    }
    form.update(overrides)
    return form


async def test_pharmacy_changes_are_recorded_with_who_before_and_after(
    as_admin: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    created = await as_admin.post("/admin/pharmacies/new", data=_pharmacy_form(token))
    assert created.status_code == 303
    admin_id = admin.id
    [pharmacy] = (await session.scalars(select(Pharmacy))).all()
    pharmacy_id = pharmacy.id
    path = f"/admin/pharmacies/{pharmacy_id}"
    await as_admin.post(path, data=_pharmacy_form(token, town="Bradford", postcode="bd1 1aa"))
    await as_admin.post(path, data=_pharmacy_form(token, town="Bradford", postcode="BD1 1AA"))
    await as_admin.post(f"{path}/active", data={"csrf_token": token, "active": "0"})
    await as_admin.post(f"{path}/active", data={"csrf_token": token, "active": "1"})

    events = await _events(session)
    assert [event.action for event in events] == [
        "created",
        "updated",  # the second save changed nothing: no event
        "deactivated",
        "activated",
    ]
    assert {event.actor_user_id for event in events} == {admin_id}
    assert {(event.entity_type, event.entity_id) for event in events} == {("pharmacy", pharmacy_id)}
    created_event, updated, deactivated, activated = events
    assert created_event.changes["name"] == {"before": None, "after": "Audit Pharmacy"}
    assert created_event.changes["platform_contact_id"] == {"before": None, "after": 7002}
    assert "address_line2" not in created_event.changes  # empty at creation: not listed
    assert updated.changes == {
        "town": {"before": "Leeds", "after": "Bradford"},
        "postcode": {"before": "LS1 5AB", "after": "BD1 1AA"},
    }
    assert deactivated.changes == {"active": {"before": True, "after": False}}
    assert activated.changes == {"active": {"before": False, "after": True}}

    page = (await as_admin.get(path)).text
    history = page[page.index('id="history"') :]
    assert "audit-admin@example.com" in history
    assert "Leeds" in history and "Bradford" in history
    assert history.index("activated") < history.index("deactivated")  # newest first


async def test_a_refused_form_records_nothing(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    response = await as_admin.post("/admin/pharmacies/new", data=_pharmacy_form(token, name=""))
    assert response.status_code == 422
    assert await _events(session) == []


async def test_an_import_records_each_pharmacy(
    as_admin: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    admin_id = admin.id
    rows = [
        "One Chemist,1 A St,,Leeds,LS1 5AB,B,,7101,yes",
        "Two Chemist,2 B St,,Leeds,LS2 7EE,B,,7102,no",
    ]
    response = await import_csv(as_admin, "\n".join([HEADER, *rows]).encode(), "p.csv")
    assert response.status_code == 200, response.text
    events = await _events(session)
    assert [event.action for event in events] == ["imported", "imported"]
    names = {event.changes["name"]["after"] for event in events}
    assert names == {"One Chemist", "Two Chemist"}
    ids = set(await session.scalars(select(Pharmacy.id)))
    assert {event.entity_id for event in events} == ids
    assert {event.actor_user_id for event in events} == {admin_id}


async def test_prescriber_secrets_are_recorded_as_changed_never_with_a_value(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    token = await csrf_for(as_admin, "/admin/prescribers/new")
    form = {
        "csrf_token": token,
        "full_name": "Dr Audit",
        "email": "dr.audit@example.com",
        "registration_number": "GMC-7999999",
        "active": "yes",
        "platform_email": LOGIN,
        "platform_password": PASSWORD_TYPED,
        "signing_pin": PIN,
    }
    assert (await as_admin.post("/admin/prescribers/new", data=form)).status_code == 303
    [prescriber] = (await session.scalars(select(Prescriber))).all()
    path = f"/admin/prescribers/{prescriber.id}"
    del prescriber  # read back below only through the pages and the trail
    changed_pin = {**form, "platform_email": "", "platform_password": "", "signing_pin": "111222"}
    assert (await as_admin.post(path, data=changed_pin)).status_code == 303
    cleared = {**changed_pin, "signing_pin": "", "clear_credentials": "yes"}
    assert (await as_admin.post(path, data=cleared)).status_code == 303

    events = await _events(session)
    assert [event.action for event in events] == ["created", "updated", "updated"]
    created, pin_changed, removed = (event.changes for event in events)
    for name in ("platform_email", "platform_password", "signing_pin"):
        assert created[name] == {"secret": "changed"}
        assert removed[name] == {"secret": "removed"}
    assert pin_changed == {"signing_pin": {"secret": "changed"}}
    assert created["full_name"] == {"before": None, "after": "Dr Audit"}

    stored = json.dumps([event.changes for event in events])
    for secret in (LOGIN, PASSWORD_TYPED, PIN, "111222"):
        assert secret not in stored
    assert "gAAAA" not in stored  # no Fernet ciphertext either
    for page_path in (path, "/admin/audit"):
        page = (await as_admin.get(page_path)).text
        assert "changed (not shown)" in page and "removed (not shown)" in page
        for secret in (LOGIN, PASSWORD_TYPED, PIN, "111222"):
            assert secret not in page, page_path


async def test_the_audit_list_shows_every_change_and_filters_by_kind(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    await as_admin.post("/admin/pharmacies/new", data=_pharmacy_form(token))
    await as_admin.post(
        "/admin/prescribers/new",
        data={
            "csrf_token": token,
            "full_name": "Dr <b>Listed</b>",
            "email": "dr.listed@example.com",
            "registration_number": "GMC-7999998",
        },
    )
    everything = (await as_admin.get("/admin/audit")).text
    assert "2 changes" in everything
    assert "Audit Pharmacy" in everything
    assert "Dr &lt;b&gt;Listed&lt;/b&gt;" in everything and "<b>Listed" not in everything
    only_pharmacies = (await as_admin.get("/admin/audit", params={"entity": "pharmacy"})).text
    assert "1 change." in only_pharmacies
    assert "dr.listed@example.com" not in only_pharmacies
    links = re.findall(r'href="(/admin/(?:pharmacies|prescribers)/[0-9a-f-]{36})"', everything)
    assert len(links) == 2
    odd = await as_admin.get("/admin/audit", params={"entity": "<nope>", "page": "1"})
    assert odd.status_code == 200
    assert (await as_admin.get("/admin/audit", params={"page": "0"})).status_code == 422


async def test_only_admins_see_the_audit_list(
    client: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    support = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    assert (await client.get("/admin/audit")).status_code == 303
    await sign_in(client, support)
    assert (await client.get("/admin/audit")).status_code == 403


async def test_the_event_is_in_the_changes_transaction(
    session: AsyncSession, db: Runtime, admin: User
) -> None:
    """Rolled back with the change: neither is kept without the other."""
    form: dict[str, Any] = {k: v for k, v in _pharmacy_form("").items() if k != "csrf_token"}
    saved, _ = await service.save_pharmacy(session, db.settings, form, actor_id=admin.id)
    assert saved is not None
    assert len(await _events(session)) == 1
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(Pharmacy)) == 0
    assert await _events(session) == []


async def test_the_trail_is_append_only(as_admin: httpx.AsyncClient, session: AsyncSession) -> None:
    token = await csrf_for(as_admin, "/admin/pharmacies/new")
    await as_admin.post("/admin/pharmacies/new", data=_pharmacy_form(token))
    for statement in (
        "UPDATE admin_audit_events SET action = 'created'",
        "DELETE FROM admin_audit_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with session.begin_nested():
                await session.execute(text(statement))
    assert len(await _events(session)) == 1
