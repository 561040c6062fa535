"""Support's confirm steps: re-route (with a required reason), void and retry.

Through the real pages and the real ledger. The prescriptions were queued but never
reached the far side, so no request here calls the platform: the send job (not run here)
would withdraw the earlier delivery before sending the new one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.deliveries import commands, ledger
from rxroute.models import Delivery, Patient, Pharmacy, Prescription, Role, User
from rxroute.prescriptions.history import history, lock_prescription
from rxroute.prescriptions.lifecycle import Source
from rxroute.runtime import Runtime
from tests import factories
from tests.staff_pages import csrf_for, sign_in


@dataclass
class World:
    support: User
    patient_user: User
    patient: Patient
    prescription: Prescription
    at_b: Pharmacy
    a1: Pharmacy
    a_inactive: Pharmacy


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await factories.make_patient(session)
    patient_user = await factories.make_user(session, Role.PATIENT, patient=patient)
    support = await factories.make_user(session, Role.SUPPORT)
    prescriber = await factories.make_prescriber(session, db.secret_box)
    at_b = await factories.make_pharmacy(session, "B", name="Wellbeing Leeds Central")
    a1 = await factories.make_pharmacy(
        session,
        "A",
        name="Harbour Chemist",
        address_line1="1 Harbour Road",
        town="Bristol",
        postcode="BS1 4RN",
    )
    a_inactive = await factories.make_pharmacy(
        session, "A", name="Closed Chemist Bristol", town="Bristol", active=False
    )
    prescription = await factories.make_prescription(
        session, patient, prescriber, region="B", channel="erx", pharmacy_id=at_b.id
    )
    await factories.queue_delivery(session, prescription.id, source=Source.PATIENT)
    await session.commit()
    return World(support, patient_user, patient, prescription, at_b, a1, a_inactive)


@pytest.fixture
async def as_support(client: httpx.AsyncClient, world: World) -> httpx.AsyncClient:
    await sign_in(client, world.support)
    return client


def _path(world: World, tail: str = "") -> str:
    return f"/support/prescriptions/{world.prescription.id}{tail}"


async def _deliveries(session: AsyncSession, prescription_id: uuid.UUID) -> list[Delivery]:
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.prescription_id == prescription_id)
            .order_by(Delivery.number)
            .execution_options(populate_existing=True)
        )
    )


async def _send_jobs(session: AsyncSession) -> int:
    found = await session.scalar(
        text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'send_prescription'")
    )
    return int(found or 0)


# --- re-route ---------------------------------------------------------------------------------


async def test_case_page_offers_a_reroute_by_region_and_search(
    as_support: httpx.AsyncClient, world: World
) -> None:
    page = (await as_support.get(_path(world))).text
    assert 'id="reroute-form"' in page
    assert f'action="{_path(world, "/reroute")}"' in page
    assert '<option value="B" selected>B (erx)</option>' in page


async def test_the_search_lists_the_regions_active_pharmacies(
    as_support: httpx.AsyncClient, world: World
) -> None:
    page = await as_support.get(_path(world, "/reroute"), params={"region": "A", "q": "bristol"})
    assert page.status_code == 200
    assert "Harbour Chemist" in page.text and "1 Harbour Road, Bristol, BS1 4RN" in page.text
    assert f'name="pharmacy_id" value="{world.a1.id}"' in page.text
    assert "Closed Chemist" not in page.text


async def test_confirm_step_names_the_pharmacy_and_address_and_asks_why(
    as_support: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    page = await as_support.get(
        _path(world, "/reroute"), params={"region": "A", "pharmacy_id": str(world.a1.id)}
    )
    assert page.status_code == 200
    assert 'id="new-pharmacy-name">Harbour Chemist<' in page.text
    assert 'id="new-pharmacy-address">1 Harbour Road, Bristol, BS1 4RN<' in page.text
    assert "Wellbeing Leeds Central" in page.text  # where it is now
    assert 'id="action-reason"' in page.text and "required" in page.text
    assert 'id="confirm-reroute"' in page.text
    assert len(await _deliveries(session, world.prescription.id)) == 1


@pytest.mark.parametrize(
    ("pharmacy", "message"),
    [
        ("inactive", "no active accepted pharmacy has this id"),
        ("garbage", "pharmacy_id: choose a pharmacy"),
        ("wrong-region", "this pharmacy is in region A, not B"),
    ],
)
async def test_confirm_step_refuses_a_bad_pharmacy(
    as_support: httpx.AsyncClient, world: World, pharmacy: str, message: str
) -> None:
    chosen = {
        "inactive": str(world.a_inactive.id),
        "garbage": "nope",
        "wrong-region": str(world.a1.id),
    }[pharmacy]
    region = "B" if pharmacy == "wrong-region" else "A"
    page = await as_support.get(
        _path(world, "/reroute"), params={"region": region, "pharmacy_id": chosen}
    )
    assert page.status_code == 422
    assert message in page.text and 'role="alert"' in page.text
    assert 'id="confirm-reroute"' not in page.text


async def test_reroute_without_a_reason_is_refused_with_a_clear_message(
    as_support: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    before = len(await history(session, world.prescription.id))
    for reason in ("", "   "):
        token = await csrf_for(as_support, _path(world))
        response = await as_support.post(
            _path(world, "/reroute"),
            data={
                "csrf_token": token,
                "region": "A",
                "pharmacy_id": str(world.a1.id),
                "reason": reason,
            },
        )
        assert response.status_code == 422
        assert "reason: say why, in a few words" in response.text
        assert 'role="alert"' in response.text
        # The confirm step comes back as it was, ready to try again.
        assert 'id="confirm-reroute"' in response.text and "Harbour Chemist" in response.text
    assert len(await _deliveries(session, world.prescription.id)) == 1
    assert len(await history(session, world.prescription.id)) == before
    assert await _send_jobs(session) == 0


async def test_reroute_with_a_reason_opens_delivery_2_and_queues_the_job(
    as_support: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    response = await as_support.post(
        _path(world, "/reroute"),
        data={
            "csrf_token": await csrf_for(as_support, _path(world)),
            "region": "A",
            "pharmacy_id": str(world.a1.id),
            "reason": "patient moved to Bristol",
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == _path(world, "?done=rerouted")
    first, second = await _deliveries(session, world.prescription.id)
    assert first.state == "superseded"
    assert (second.state, second.channel, second.pharmacy_id) == ("pending", "email", world.a1.id)
    assert (second.actor, second.reason) == (str(world.support.id), "patient moved to Bristol")
    last = (await history(session, world.prescription.id))[-1]
    assert (last.status, last.source, last.actor) == ("queued", "support", str(world.support.id))
    assert "patient moved to Bristol" in (last.detail or "")
    assert await _send_jobs(session) == 1

    page = (await as_support.get(response.headers["location"])).text
    assert "Re-routed: the earlier delivery is withdrawn first" in page
    assert "superseded" in page and "Harbour Chemist" in page


async def test_reroute_needs_the_csrf_token(
    as_support: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    form = {"region": "A", "pharmacy_id": str(world.a1.id), "reason": "moved"}
    for extra in ({}, {"csrf_token": "forged"}):
        response = await as_support.post(_path(world, "/reroute"), data={**form, **extra})
        assert response.status_code == 403
    assert len(await _deliveries(session, world.prescription.id)) == 1


async def test_reroute_of_a_voided_prescription_is_refused(
    as_support: httpx.AsyncClient, session: AsyncSession, world: World, db: Runtime
) -> None:
    await commands.cancel(db, world.support, world.prescription.id, reason="duplicate")
    page = await as_support.get(_path(world, "/reroute"), params={"region": "A"})
    assert page.status_code == 409
    assert "Not possible now: this prescription is voided." in page.text
    assert 'id="reroute-search"' not in page.text
    response = await as_support.post(
        _path(world, "/reroute"),
        data={
            "csrf_token": await csrf_for(as_support, _path(world)),
            "region": "A",
            "pharmacy_id": str(world.a1.id),
            "reason": "try anyway",
        },
    )
    assert response.status_code == 409
    assert "cannot be re-routed" in response.text
    assert 'id="confirm-reroute"' not in response.text


async def test_patients_may_not_open_the_confirm_steps(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.patient_user)
    for tail in ("/reroute", "/void", "/retry"):
        response = await client.get(_path(world, tail), headers={"accept": "text/html"})
        assert response.status_code == 403, tail


async def test_unknown_prescription_is_404(as_support: httpx.AsyncClient) -> None:
    for tail in ("/reroute", "/void", "/retry"):
        response = await as_support.get(f"/support/prescriptions/{uuid.uuid4()}{tail}")
        assert response.status_code == 404, tail


# --- void and retry -----------------------------------------------------------------------------


async def test_void_confirm_step_says_what_happens_and_a_missing_reason_comes_back_to_it(
    as_support: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    page = (await as_support.get(_path(world))).text
    assert f'action="{_path(world, "/void")}"' in page and 'method="get"' in page
    confirm = await as_support.get(_path(world, "/void"))
    assert confirm.status_code == 200
    assert "Void this prescription?" in confirm.text
    assert "e-prescription platform" in confirm.text
    assert 'id="action-reason"' in confirm.text and 'id="confirm-void"' in confirm.text
    response = await as_support.post(
        _path(world, "/void"), data={"csrf_token": await csrf_for(as_support, _path(world))}
    )
    assert response.status_code == 422
    assert "reason: say why" in response.text and 'id="confirm-void"' in response.text
    current = await session.get(Prescription, world.prescription.id, populate_existing=True)
    assert current is not None and current.status == "queued"


async def test_retry_asks_for_a_reason_and_records_it(
    as_support: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    locked = await lock_prescription(session, world.prescription.id)
    assert locked.current_delivery_id is not None
    delivery = await ledger.get_delivery(session, locked.current_delivery_id)
    await ledger.fail(session, locked, delivery, "the selected contact is invalid")
    await session.commit()

    confirm = await as_support.get(_path(world, "/retry"))
    assert confirm.status_code == 200
    assert "Last failure: the selected contact is invalid" in confirm.text
    assert "Wellbeing Leeds Central" in confirm.text
    assert 'id="confirm-retry"' in confirm.text

    token = await csrf_for(as_support, _path(world))
    missing = await as_support.post(_path(world, "/retry"), data={"csrf_token": token})
    assert missing.status_code == 422
    assert "reason: say why" in missing.text and 'id="confirm-retry"' in missing.text
    assert await _send_jobs(session) == 0

    done = await as_support.post(
        _path(world, "/retry"),
        data={"csrf_token": token, "reason": "platform contact fixed by the clinic"},
    )
    assert done.status_code == 303
    last = (await history(session, world.prescription.id))[-1]
    assert (last.status, last.source) == ("queued", "support")
    assert last.detail is not None
    assert "platform contact fixed by the clinic" in last.detail
    assert "the selected contact is invalid" in last.detail
    assert await _send_jobs(session) == 1


async def test_retry_confirm_step_is_refused_unless_failed(
    as_support: httpx.AsyncClient, world: World
) -> None:
    response = await as_support.get(_path(world, "/retry"))
    assert response.status_code == 409
    assert "Not possible now: this prescription is queued." in response.text
    assert 'id="confirm-retry"' not in response.text
