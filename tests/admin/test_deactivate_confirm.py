"""Admin: deactivating a pharmacy asks first, says what it affects, and keeps the list's filter."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import AdminAuditEvent, Pharmacy, Role
from rxroute.prescriptions.lifecycle import Source
from rxroute.runtime import Runtime
from tests import factories
from tests.staff_pages import csrf_for, sign_in


@pytest.fixture
async def pharmacy(session: AsyncSession, db: Runtime) -> Pharmacy:
    found = await factories.make_pharmacy(
        session, "B", name="Kirkgate Pharmacy", address_line1="7 Kirkgate", postcode="LS2 7DJ"
    )
    patient = await factories.make_patient(session)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    for _ in range(2):
        prescription = await factories.make_prescription(
            session, patient, prescriber, region="B", channel="erx", pharmacy_id=found.id
        )
        await factories.queue_delivery(session, prescription.id, source=Source.PATIENT)
    await session.commit()
    return found


async def test_the_list_asks_first_and_the_filter_is_kept(
    as_admin: httpx.AsyncClient, session: AsyncSession, pharmacy: Pharmacy
) -> None:
    listing = await as_admin.get(
        "/admin/pharmacies", params={"region": "B", "q": "kirkgate", "state": "active"}
    )
    assert f'action="/admin/pharmacies/{pharmacy.id}/deactivate"' in listing.text
    assert 'method="get"' in listing.text

    confirm = await as_admin.get(
        f"/admin/pharmacies/{pharmacy.id}/deactivate",
        params={"back": "list", "back_query": "q=kirkgate&region=B&state=active&page=1&evil=x"},
    )
    assert confirm.status_code == 200
    assert "Deactivate this pharmacy?" in confirm.text
    assert "Kirkgate Pharmacy" in confirm.text and "7 Kirkgate, Leeds, LS2 7DJ" in confirm.text
    assert "2 prescriptions are on the way to it" in confirm.text
    assert 'id="confirm-deactivate"' in confirm.text
    assert "evil" not in confirm.text  # only the list's own parameters travel along

    response = await as_admin.post(
        f"/admin/pharmacies/{pharmacy.id}/active",
        data={
            "csrf_token": await csrf_for(as_admin, "/admin/pharmacies"),
            "active": "0",
            "back": "list",
            "back_query": "q=kirkgate&region=B&state=active&page=1",
        },
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/admin/pharmacies"
    assert parse_qs(location.query) == {
        "q": ["kirkgate"],
        "region": ["B"],
        "state": ["active"],
        "page": ["1"],
        "done": ["pharmacy-deactivated"],
    }
    await session.refresh(pharmacy)
    assert pharmacy.active is False
    page = await as_admin.get(response.headers["location"])
    assert "Pharmacy deactivated" in page.text


async def test_the_reason_given_is_kept_in_the_history(
    as_admin: httpx.AsyncClient, session: AsyncSession, pharmacy: Pharmacy
) -> None:
    confirm = await as_admin.get(f"/admin/pharmacies/{pharmacy.id}/deactivate")
    assert 'id="action-reason"' in confirm.text
    response = await as_admin.post(
        f"/admin/pharmacies/{pharmacy.id}/active",
        data={
            "csrf_token": await csrf_for(as_admin, "/admin/pharmacies"),
            "active": "0",
            "reason": "  closed   for refit ",
        },
    )
    assert response.status_code == 303
    [event] = (
        await session.scalars(
            select(AdminAuditEvent).where(AdminAuditEvent.entity_id == pharmacy.id)
        )
    ).all()
    assert event.action == "deactivated"
    assert event.changes["active"] == {"before": True, "after": False}
    assert event.changes["reason"] == {"before": None, "after": "closed for refit"}
    page = (await as_admin.get(f"/admin/pharmacies/{pharmacy.id}")).text
    assert "closed for refit" in page


async def test_the_pharmacy_page_asks_first_too(
    as_admin: httpx.AsyncClient, pharmacy: Pharmacy
) -> None:
    page = await as_admin.get(f"/admin/pharmacies/{pharmacy.id}")
    assert f'action="/admin/pharmacies/{pharmacy.id}/deactivate"' in page.text
    confirm = await as_admin.get(f"/admin/pharmacies/{pharmacy.id}/deactivate")
    assert confirm.status_code == 200
    assert f'href="/admin/pharmacies/{pharmacy.id}"' in confirm.text  # "keep it" goes back


async def test_unknown_pharmacy_is_404_and_support_may_not(
    client: httpx.AsyncClient, session: AsyncSession, pharmacy: Pharmacy
) -> None:
    support = await factories.make_user(session, Role.SUPPORT)
    await session.commit()
    await sign_in(client, support)
    refused = await client.get(f"/admin/pharmacies/{pharmacy.id}/deactivate")
    assert refused.status_code == 403
    client.cookies.clear()
    admin = await factories.make_user(session, Role.ADMIN)
    await session.commit()
    await sign_in(client, admin)
    missing = await client.get(f"/admin/pharmacies/{uuid.uuid4()}/deactivate")
    assert missing.status_code == 404
