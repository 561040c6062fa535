"""Pages and the status JSON show times in the configured zone, with the zone named.

A history line stored as 2026-07-01T12:00Z must read 13:00 BST in London (never "12:00 UTC"
or the server's zone), 08:00 EDT when the setting says New York, and carry the exact UTC
moment for machines and hovers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Prescription, PrescriptionStatusEvent, Role, User
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from tests import staff_pages
from tests.factories import make_patient, make_prescriber, make_prescription, make_user
from tests.web.helpers import HTML, sign_in

#: Summer (BST, UTC+1 in London) and winter (GMT) moments of the history.
ISSUED_AT = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
ISSUED_RECORDED_AT = datetime(2026, 7, 1, 12, 0, 5, tzinfo=UTC)
QUEUED_AT = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
CREATED_AT = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
EXACT = "2026-07-01T12:00:00Z"


@dataclass
class World:
    patient: User
    support: User
    prescription: Prescription


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await make_patient(session, region="B")
    patient_user = await make_user(session, Role.PATIENT, patient=patient)
    support = await make_user(session, Role.SUPPORT)
    prescriber = await make_prescriber(session, db.secret_box)
    prescription = await make_prescription(
        session,
        patient,
        prescriber,
        region="B",
        channel="erx",
        status=Status.ISSUED.value,
        created_at=CREATED_AT,
    )
    # History lines written directly: this is about how stored moments are shown.
    for status, source, occurred, recorded in (
        (Status.QUEUED, Source.PATIENT, QUEUED_AT, QUEUED_AT),
        (Status.ISSUED, Source.WORKER, ISSUED_AT, ISSUED_RECORDED_AT),
    ):
        session.add(
            PrescriptionStatusEvent(
                prescription_id=prescription.id,
                status=status.value,
                source=source.value,
                occurred_at=occurred,
                recorded_at=recorded,
            )
        )
        await session.flush()  # seq follows insertion order
    await session.commit()
    return World(patient_user, support, prescription)


def _in_zone(monkeypatch: pytest.MonkeyPatch, db: Runtime, zone: str) -> None:
    monkeypatch.setattr(db, "settings", db.settings.model_copy(update={"display_timezone": zone}))


def _timeline(page: str) -> str:
    return page[page.index('id="timeline"') :]


async def test_patient_timeline_in_london_time(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.patient.email)
    page = (await client.get(f"/prescriptions/{world.prescription.id}", headers=HTML)).text
    timeline = _timeline(page)
    assert (
        f'<time class="small muted" datetime="{EXACT}" title="{EXACT}">1 Jul 2026, 13:00 BST</time>'
        in timeline
    )
    assert ">15 Jan 2026, 09:30 GMT</time>" in timeline
    assert "UTC" not in page


async def test_patient_list_in_london_time(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.patient.email)
    page = (await client.get("/prescriptions", headers=HTML)).text
    exact = "2026-01-15T09:00:00Z"
    assert f'<time datetime="{exact}" title="{exact}">15 Jan 2026, 09:00 GMT</time>' in page


async def test_support_case_page_in_london_time(client: httpx.AsyncClient, world: World) -> None:
    await staff_pages.sign_in(client, world.support)
    page = (await client.get(f"/support/prescriptions/{world.prescription.id}")).text
    timeline = page[page.index('id="timeline"') : page.index('id="events-heading"')]
    assert f'<time datetime="{EXACT}" title="{EXACT}">1 Jul 2026, 13:00:00 BST</time>' in timeline
    assert ">1 Jul 2026, 13:00:05 BST</time>" in timeline  # recorded_at
    assert ">15 Jan 2026, 09:30:00 GMT</time>" in timeline
    assert ">15 Jan 2026, 09:00:00 GMT</time>" in page  # created
    assert "UTC" not in page


async def test_support_search_lists_in_london_time(client: httpx.AsyncClient, world: World) -> None:
    await staff_pages.sign_in(client, world.support)
    token = await staff_pages.csrf_for(client, "/support")
    search = {"csrf_token": token, "q": str(world.prescription.id)}
    page = (await client.post("/support/search", data=search)).text
    assert str(world.prescription.id) in page
    assert ">15 Jan 2026, 09:00 GMT</time>" in page


async def test_status_json_carries_the_display_string(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.patient.email)
    body = (await client.get(f"/api/v1/prescriptions/{world.prescription.id}")).json()
    by_status = {event["status"]: event for event in body["history"]}
    assert by_status["issued"]["occurred_at_display"] == "1 Jul 2026, 13:00 BST"
    assert by_status["queued"]["occurred_at_display"] == "15 Jan 2026, 09:30 GMT"
    assert datetime.fromisoformat(by_status["issued"]["occurred_at"]) == ISSUED_AT


async def test_another_zone_through_the_setting(
    client: httpx.AsyncClient, world: World, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_zone(monkeypatch, db, "America/New_York")
    await sign_in(client, world.patient.email)
    page = (await client.get(f"/prescriptions/{world.prescription.id}", headers=HTML)).text
    assert f'title="{EXACT}">1 Jul 2026, 08:00 EDT</time>' in _timeline(page)
    assert ">15 Jan 2026, 04:30 EST</time>" in _timeline(page)
    body = (await client.get(f"/api/v1/prescriptions/{world.prescription.id}")).json()
    shown = {event["status"]: event["occurred_at_display"] for event in body["history"]}
    assert shown == {"queued": "15 Jan 2026, 04:30 EST", "issued": "1 Jul 2026, 08:00 EDT"}

    await client.post("/logout")
    client.cookies.clear()
    await staff_pages.sign_in(client, world.support)
    page = (await client.get(f"/support/prescriptions/{world.prescription.id}")).text
    assert f'title="{EXACT}">1 Jul 2026, 08:00:00 EDT</time>' in page


def test_the_live_timeline_script_shows_the_servers_string() -> None:
    """The browser must not format times itself (it would use its own rule or zone): the
    live timeline swaps in the server-rendered panel."""
    from rxroute.web.templating import TEMPLATE_DIR

    script = (TEMPLATE_DIR.parent / "static" / "patient.js").read_text()
    assert 'getElementById("status-panel")' in script and "DOMParser" in script
    assert not re.search(r"getUTC|getHours|toLocale|Intl\.DateTimeFormat", script)
