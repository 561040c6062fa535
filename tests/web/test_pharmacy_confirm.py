"""Region A: the pharmacy's confirmation link - valid, expired, tampered, used twice, unbound.

A link is bound to one delivery (prescription, delivery, nonce): it works only while that
delivery is the prescription's live one.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.email.channel import new_link_nonce
from rxroute.channels.email.links import DispenseLink, make_dispense_token
from rxroute.config import Settings
from rxroute.deliveries import commands, ledger
from rxroute.models import Delivery, Prescription, Role
from rxroute.prescriptions.history import history, record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.runtime import Runtime
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
    observe_current,
    queue_delivery,
)


async def _emailed(session: AsyncSession, db: Runtime) -> Prescription:
    """A Region A prescription whose one delivery is live (emailed), with a link nonce."""
    patient = await make_patient(session, region="A", first_name="Secretname")
    prescriber = await make_prescriber(session, db.secret_box)
    pharmacy = await make_pharmacy(session, "A")
    prescription = await make_prescription(
        session, patient, prescriber, items=2, region="A", channel="email", pharmacy_id=pharmacy.id
    )
    delivery = await queue_delivery(session, prescription.id)
    delivery.link_nonce = new_link_nonce()
    await record_status(session, prescription.id, Status.SENDING, source=Source.WORKER)
    await observe_current(
        session, prescription.id, Status.EMAILED, ref=f"<{uuid.uuid4().hex}@example.com>"
    )
    await session.commit()
    return prescription


@pytest.fixture
async def emailed(session: AsyncSession, db: Runtime) -> Prescription:
    return await _emailed(session, db)


async def _delivery(session: AsyncSession, prescription: Prescription) -> Delivery:
    current = await session.get(Prescription, prescription.id, populate_existing=True)
    assert current is not None and current.current_delivery_id is not None
    return await ledger.get_delivery(session, current.current_delivery_id)


async def _token(
    session: AsyncSession,
    settings: Settings,
    prescription: Prescription,
    *,
    secret: str | None = None,
    **changes: str,
) -> str:
    """The link emailed for the current delivery, with ``changes`` to its bound fields."""
    delivery = await _delivery(session, prescription)
    assert delivery.link_nonce is not None
    fields = {
        "prescription_id": str(prescription.id),
        "delivery_id": str(delivery.id),
        "nonce": delivery.link_nonce,
        **changes,
    }
    signing_secret = secret or settings.link_secret.get_secret_value()
    return make_dispense_token(signing_secret, DispenseLink(**fields))


async def _statuses(session: AsyncSession, prescription: Prescription) -> list[str]:
    return [e.status for e in await history(session, prescription.id)]


async def test_valid_link_shows_only_the_id_and_items(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, emailed: Prescription
) -> None:
    page = await client.get(f"/pharmacy/confirm/{await _token(session, settings, emailed)}")
    assert page.status_code == 200
    assert str(emailed.id) in page.text
    assert "Semaglutide 0.25mg pen 0" in page.text and "Semaglutide 0.25mg pen 1" in page.text
    assert "Secretname" not in page.text
    assert "Confirm dispensed</button>" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"


async def test_confirm_records_dispensed_once(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, emailed: Prescription
) -> None:
    token = await _token(session, settings, emailed)
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
    delivery = await _delivery(session, emailed)
    assert dispensed[0].delivery_id == delivery.id
    current = await session.get(Prescription, emailed.id, populate_existing=True)
    assert current is not None and current.status == "dispensed"


async def test_post_without_the_nonce_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, emailed: Prescription
) -> None:
    token = await _token(session, settings, emailed)
    for data in ({}, {"nonce": "something-else"}):
        response = await client.post(f"/pharmacy/confirm/{token}", data=data)
        assert response.status_code == 403
    assert (await _statuses(session, emailed))[-1] == "emailed"


async def test_expired_link(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    emailed: Prescription,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued_at = int(time.time()) - settings.pharmacy_link_ttl_hours * 3600 - 60
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: issued_at)
        token = await _token(session, settings, emailed)
    page = await client.get(f"/pharmacy/confirm/{token}")
    assert page.status_code == 410
    assert "This link has expired" in page.text
    assert "contact the clinic" in page.text
    post = await client.post(f"/pharmacy/confirm/{token}", data={"nonce": token})
    assert post.status_code == 410
    assert (await _statuses(session, emailed))[-1] == "emailed"


@pytest.mark.parametrize("kind", ["tampered", "truncated", "garbage", "other-secret", "huge"])
async def test_invalid_links(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    emailed: Prescription,
    kind: str,
) -> None:
    good = await _token(session, settings, emailed)
    token = {
        "tampered": good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb"),
        "truncated": good[: len(good) // 2],
        "garbage": "<script>alert(1)<\\script>",
        "other-secret": await _token(session, settings, emailed, secret="another-secret"),
        "huge": "a" * 5000,
    }[kind]
    page = await client.get(f"/pharmacy/confirm/{token}")
    assert page.status_code == 400
    assert "This link is not valid" in page.text
    assert "<script>alert(1)" not in page.text
    post = await client.post(f"/pharmacy/confirm/{token}", data={"nonce": token})
    assert post.status_code == 400
    assert (await _statuses(session, emailed))[-1] == "emailed"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"prescription_id": str(uuid.UUID(int=0))}, id="unknown-prescription"),
        pytest.param({"prescription_id": "SRX123"}, id="prescription-not-a-uuid"),
        pytest.param({"delivery_id": str(uuid.UUID(int=0))}, id="unknown-delivery"),
        pytest.param({"delivery_id": "not-a-uuid"}, id="delivery-not-a-uuid"),
        # Signed with our secret, but not the nonce the delivery was emailed with.
        pytest.param({"nonce": "guessed-nonce"}, id="wrong-nonce"),
    ],
)
async def test_a_link_not_bound_to_a_real_delivery_is_invalid(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    emailed: Prescription,
    changes: dict[str, str],
) -> None:
    token = await _token(session, settings, emailed, **changes)
    assert (await client.get(f"/pharmacy/confirm/{token}")).status_code == 400
    post = await client.post(f"/pharmacy/confirm/{token}", data={"nonce": token})
    assert post.status_code == 400
    assert (await _statuses(session, emailed))[-1] == "emailed"


async def test_a_link_for_another_prescriptions_delivery_is_invalid(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    db: Runtime,
    emailed: Prescription,
) -> None:
    """Swapping the prescription id in a genuine link does not reach another prescription."""
    other = await _emailed(session, db)
    other_delivery = await _delivery(session, other)
    token = await _token(session, settings, emailed, delivery_id=str(other_delivery.id))
    post = await client.post(f"/pharmacy/confirm/{token}", data={"nonce": token})
    assert post.status_code == 400
    assert (await _statuses(session, emailed))[-1] == "emailed"
    assert (await _statuses(session, other))[-1] == "emailed"


async def test_cancelled_prescription_cannot_be_confirmed(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    db: Runtime,
    emailed: Prescription,
) -> None:
    token = await _token(session, settings, emailed)
    support = await make_user(session, Role.SUPPORT)
    await session.commit()
    await commands.cancel(db, support, emailed.id, reason="prescriber asked to stop")
    page = await client.get(f"/pharmacy/confirm/{token}")
    assert "cancelled or sent to another pharmacy" in page.text
    assert "Please do not dispense it" in page.text
    assert "Confirm dispensed</button>" not in page.text
    post = await client.post(f"/pharmacy/confirm/{token}", data={"nonce": token})
    assert post.status_code == 409
    assert "cancelled or sent to another pharmacy" in post.text
    assert (await _statuses(session, emailed))[-1] == "voided"
    assert "dispensed" not in await _statuses(session, emailed)
