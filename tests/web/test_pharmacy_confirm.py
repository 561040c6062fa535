"""Region A: the pharmacy's confirmation link - valid, expired, tampered, used twice."""

from __future__ import annotations

import time

import httpx
import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.email.links import make_dispense_token
from rxroute.config import Settings
from rxroute.models import Prescription
from rxroute.prescriptions.history import history, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from tests.factories import make_patient, make_pharmacy, make_prescriber, make_prescription


@pytest.fixture
async def emailed(session: AsyncSession, db: Runtime) -> Prescription:
    patient = await make_patient(session, region="A", first_name="Secretname")
    prescriber = await make_prescriber(session, db.secret_box)
    pharmacy = await make_pharmacy(session, "A")
    prescription = await make_prescription(
        session, patient, prescriber, items=2, region="A", channel="email", pharmacy_id=pharmacy.id
    )
    for status in (Status.QUEUED, Status.SENDING, Status.EMAILED):
        await record_status(session, prescription.id, status, source=Source.WORKER)
    await session.commit()
    return prescription


def _token(settings: Settings, prescription: Prescription) -> str:
    return make_dispense_token(settings.session_secret.get_secret_value(), str(prescription.id))


async def test_valid_link_shows_only_the_id_and_items(
    client: httpx.AsyncClient, settings: Settings, emailed: Prescription
) -> None:
    page = await client.get(f"/pharmacy/confirm/{_token(settings, emailed)}")
    assert page.status_code == 200
    assert str(emailed.id) in page.text
    assert "Semaglutide 0.25mg pen 0" in page.text and "Semaglutide 0.25mg pen 1" in page.text
    assert "Secretname" not in page.text
    assert "Confirm dispensed" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


async def test_confirm_records_dispensed_once(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, emailed: Prescription
) -> None:
    token = _token(settings, emailed)
    url = f"/pharmacy/confirm/{token}"
    first = await client.post(url, data={"nonce": token})
    assert first.status_code == 303
    assert first.headers["location"] == f"{url}?done=1"
    landed = await client.get(first.headers["location"])
    assert "Thank you: recorded as dispensed." in landed.text
    assert "Confirmed as dispensed." in landed.text
    second = await client.post(url, data={"nonce": token})
    assert second.status_code == 200
    assert "This was already confirmed." in second.text
    events = await history(session, emailed.id)
    dispensed = [e for e in events if e.status == "dispensed"]
    assert len(dispensed) == 1
    assert dispensed[0].source == "pharmacy"
    current = await session.get(Prescription, emailed.id, populate_existing=True)
    assert current is not None and current.status == "dispensed"


async def test_post_without_the_nonce_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, emailed: Prescription
) -> None:
    token = _token(settings, emailed)
    for data in ({}, {"nonce": "something-else"}):
        response = await client.post(f"/pharmacy/confirm/{token}", data=data)
        assert response.status_code == 403
    assert [e.status for e in await history(session, emailed.id)][-1] == "emailed"


async def test_expired_link(
    client: httpx.AsyncClient,
    settings: Settings,
    emailed: Prescription,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued_at = int(time.time()) - settings.pharmacy_link_ttl_hours * 3600 - 60
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: issued_at)
        token = _token(settings, emailed)
    page = await client.get(f"/pharmacy/confirm/{token}")
    assert page.status_code == 410
    assert "This link has expired" in page.text
    assert "contact the clinic" in page.text
    post = await client.post(f"/pharmacy/confirm/{token}", data={"nonce": token})
    assert post.status_code == 410


@pytest.mark.parametrize("kind", ["tampered", "truncated", "garbage", "other-secret", "huge"])
async def test_invalid_links(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    emailed: Prescription,
    kind: str,
) -> None:
    good = _token(settings, emailed)
    token = {
        "tampered": good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb"),
        "truncated": good[: len(good) // 2],
        "garbage": "<script>alert(1)<\\script>",
        "other-secret": make_dispense_token("another-secret", str(emailed.id)),
        "huge": "a" * 5000,
    }[kind]
    page = await client.get(f"/pharmacy/confirm/{token}")
    assert page.status_code == 400
    assert "This link is not valid" in page.text
    assert "<script>alert(1)" not in page.text
    post = await client.post(f"/pharmacy/confirm/{token}", data={"nonce": token})
    assert post.status_code == 400
    assert [e.status for e in await history(session, emailed.id)][-1] == "emailed"


async def test_unknown_prescription_is_invalid(
    client: httpx.AsyncClient, settings: Settings, db: Runtime
) -> None:
    token = make_dispense_token(
        settings.session_secret.get_secret_value(), "00000000-0000-0000-0000-000000000000"
    )
    assert (await client.get(f"/pharmacy/confirm/{token}")).status_code == 400
    not_uuid = make_dispense_token(settings.session_secret.get_secret_value(), "SRX123")
    assert (await client.get(f"/pharmacy/confirm/{not_uuid}")).status_code == 400


async def test_cancelled_prescription_cannot_be_confirmed(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, emailed: Prescription
) -> None:
    await record_status(session, emailed.id, Status.VOIDED, source=Source.SUPPORT)
    await session.commit()
    token = _token(settings, emailed)
    page = await client.get(f"/pharmacy/confirm/{token}")
    assert "This prescription was cancelled" in page.text
    assert "Confirm dispensed</button>" not in page.text
    post = await client.post(f"/pharmacy/confirm/{token}", data={"nonce": token})
    assert post.status_code == 409
    assert [e.status for e in await history(session, emailed.id)][-1] == "voided"
