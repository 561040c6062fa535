"""Admin: live checks of a pharmacy and a prescriber against the sandbox, the health badge,
withholding a pharmacy whose contact the platform rejected (at a check or a send), and
clearing it."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.admin.health import check_pharmacy
from rxroute.channels.erx.base import Contact, PrescriberCredentials
from rxroute.deliveries.commands import InvalidChoice, choose_destination
from rxroute.models import AdminAuditEvent, Pharmacy, Prescriber, User
from rxroute.pharmacies.repository import search
from rxroute.runtime import Runtime
from tests import factories
from tests.erx_sandbox import Erx, queue_for_erx, send_until_done
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.staff_pages import csrf_for

ALICE = ("dr.alice.hartfield@example.com", "sandbox-prescriber-alice", "123456")
CAROL = ("dr.carol.inactive@example.com", "sandbox-prescriber-carol", "111111")


async def _prescriber(
    session: AsyncSession, runtime: Runtime, login: tuple[str, str, str]
) -> Prescriber:
    email, password, pin = login
    found = await factories.make_prescriber(
        session, runtime.secret_box, email=email, password=password, pin=pin
    )
    await session.commit()
    return found


async def _pharmacy(session: AsyncSession, contact: int, name: str) -> Pharmacy:
    found = await factories.make_pharmacy(
        session, "B", name=name, town="Leeds", platform_contact_id=contact
    )
    await session.commit()
    return found


async def _check(client: httpx.AsyncClient, path: str, **extra: str) -> httpx.Response:
    token = await csrf_for(client, "/admin/pharmacies")
    return await client.post(path, data={"csrf_token": token, **extra})


async def _events(session: AsyncSession, entity_id: uuid.UUID) -> list[AdminAuditEvent]:
    return list(
        await session.scalars(
            select(AdminAuditEvent)
            .where(AdminAuditEvent.entity_id == entity_id)
            .order_by(AdminAuditEvent.seq)
        )
    )


async def test_checking_a_known_contact_says_ok_and_keeps_the_list_filter(
    erx: Erx, as_admin: httpx.AsyncClient, session: AsyncSession, admin: User
) -> None:
    await _prescriber(session, erx.runtime, ALICE)
    pharmacy = await _pharmacy(session, 5002, "Kingsway Pharmacy Leeds")

    response = await _check(
        as_admin,
        f"/admin/pharmacies/{pharmacy.id}/check",
        back="list",
        back_query="q=kingsway&region=B&state=active&page=1",
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/admin/pharmacies"
    assert parse_qs(location.query) == {
        "q": ["kingsway"],
        "region": ["B"],
        "state": ["active"],
        "page": ["1"],
        "done": ["checked-ok"],
    }
    await session.refresh(pharmacy)
    assert pharmacy.health_status == "ok"
    assert pharmacy.health_checked_at is not None
    assert "contact ID 5002 is registered" in (pharmacy.health_detail or "")
    assert pharmacy.withheld_at is None

    listing = (await as_admin.get(response.headers["location"])).text
    assert 'data-health="ok"' in listing and "Checked: everything" in listing
    [event] = await _events(session, pharmacy.id)
    assert event.action == "checked" and event.actor_user_id == admin.id
    assert event.changes["health"]["before"] is None
    assert event.changes["health"]["after"].startswith("ok: ")


async def test_an_unknown_contact_fails_and_is_withheld_until_cleared(
    erx: Erx, as_admin: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    await _prescriber(session, erx.runtime, ALICE)
    bad = await _pharmacy(session, 9999, "Nowhere Pharmacy")
    assert [p.id for p in await search(session, "B", "nowhere")] == [bad.id]
    await session.commit()

    response = await _check(as_admin, f"/admin/pharmacies/{bad.id}/check")
    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/pharmacies/{bad.id}?done=checked-withheld"
    await session.refresh(bad)
    assert bad.health_status == "fail"
    assert "contact ID 9999 is not among the platform's 36 contacts" in (bad.health_detail or "")
    assert bad.withheld_at is not None

    # Out of the patients' search, and not choosable by id either.
    assert await search(session, "B", "nowhere") == []
    assert bad.id not in {p.id for p in await search(session, "B", "")}
    with pytest.raises(InvalidChoice, match="does not accept this pharmacy's contact"):
        await choose_destination(session, erx.runtime, "B", bad.id)
    await session.commit()

    page = (await as_admin.get(response.headers["location"])).text
    assert 'data-health="fail"' in page and 'data-withheld="yes"' in page
    assert "now withheld" in page and 'id="clear-withheld"' in page
    withheld = (await as_admin.get("/admin/pharmacies", params={"state": "withheld"})).text
    assert "Nowhere Pharmacy" in withheld

    # The admin clears it (with a reason): back in the search, and in the history.
    response = await _check(
        as_admin, f"/admin/pharmacies/{bad.id}/clear", reason="platform registered it today"
    )
    assert response.headers["location"] == f"/admin/pharmacies/{bad.id}?done=cleared"
    await session.refresh(bad)
    assert bad.withheld_at is None
    assert [p.id for p in await search(session, "B", "nowhere")] == [bad.id]
    actions = [(e.action, e.changes.get("withheld")) for e in await _events(session, bad.id)]
    assert actions == [
        ("checked", {"before": False, "after": True}),
        ("cleared", {"before": True, "after": False}),
    ]
    cleared = (await _events(session, bad.id))[-1]
    assert cleared.changes["reason"]["after"] == "platform registered it today"
    # Clearing again changes nothing and records nothing.
    again = await _check(as_admin, f"/admin/pharmacies/{bad.id}/clear")
    assert again.headers["location"].endswith("done=not-withheld")
    assert len(await _events(session, bad.id)) == 2


async def test_a_send_rejected_for_its_contact_withholds_the_pharmacy(
    erx: Erx, session: AsyncSession
) -> None:
    doctor = await _prescriber(session, erx.runtime, ALICE)
    bad = await _pharmacy(session, 9998, "Rejected Contact Pharmacy")
    patient = await factories.make_patient(session)
    prescription = await factories.make_prescription(session, patient, doctor)
    await queue_for_erx(session, prescription.id, bad)
    await session.commit()

    outcomes = await send_until_done(erx.runtime, prescription.id)
    assert [o.result for o in outcomes] == ["failed"]
    await session.refresh(bad)
    assert bad.health_status == "fail" and bad.withheld_at is not None
    assert "does not know contact ID 9998" in (bad.health_detail or "")
    assert await search(session, "B", "rejected contact") == []


async def test_a_send_refused_for_an_inactive_account_marks_the_prescriber(
    erx: Erx, session: AsyncSession
) -> None:
    carol = await _prescriber(session, erx.runtime, CAROL)
    good = await _pharmacy(session, 5001, "Kingsway Pharmacy Manchester")
    patient = await factories.make_patient(session)
    prescription = await factories.make_prescription(session, patient, carol)
    await queue_for_erx(session, prescription.id, good)
    await session.commit()

    outcomes = await send_until_done(erx.runtime, prescription.id)
    assert [o.result for o in outcomes] == ["failed"]
    await session.refresh(carol)
    await session.refresh(good)
    assert carol.health_status == "fail"
    assert "account is inactive" in (carol.health_detail or "")
    assert good.withheld_at is None and good.health_status is None


async def test_checking_prescribers_logs_in_to_the_platform(
    erx: Erx, as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    alice = await _prescriber(session, erx.runtime, ALICE)
    wrong = await _prescriber(
        session, erx.runtime, ("dr.ben.okonjo@example.com", "not-his-password", "654321")
    )
    response = await _check(as_admin, f"/admin/prescribers/{alice.id}/check")
    assert response.headers["location"] == f"/admin/prescribers/{alice.id}?done=checked-ok"
    response = await _check(
        as_admin, f"/admin/prescribers/{wrong.id}/check", back="list", back_query=""
    )
    assert response.headers["location"] == "/admin/prescribers?done=checked-fail"
    await session.refresh(alice)
    await session.refresh(wrong)
    assert alice.health_status == "ok" and "login works" in (alice.health_detail or "")
    assert "994 is the internal ID" in (alice.health_detail or "")
    assert wrong.health_status == "fail" and "login failed" in (wrong.health_detail or "")
    for secret in ("not-his-password", "654321", "sandbox-prescriber-alice"):
        assert secret not in (wrong.health_detail or "") + (alice.health_detail or "")
    listing = (await as_admin.get("/admin/prescribers")).text
    assert listing.count('data-health="ok"') == 1 and listing.count('data-health="fail"') == 1


async def test_the_regions_page_shows_each_platform_login_but_no_password(
    erx: Erx, as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    await _prescriber(session, erx.runtime, ALICE)
    page = (await as_admin.get("/admin/regions")).text
    assert "<code>dr.alice.hartfield@example.com</code>" in page
    assert 'id="platform-client-id">rxroute-demo-client<' in page
    for secret in ALICE[1:]:
        assert secret not in page


class _WatchingPlatform:
    """A platform whose contact list looks at the database while it is being asked."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.open_transactions: list[int] = []

    async def list_contacts(self, prescriber: PrescriberCredentials) -> list[Contact]:
        async with self.runtime.engine.connect() as connection:
            waiting = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            )
        self.open_transactions.append(int(waiting or 0))
        return [Contact(5002, "Kingsway Pharmacy Leeds", "leeds@example.com", "LS1 5AB")]


async def test_no_transaction_is_open_while_the_platform_answers(
    as_admin: httpx.AsyncClient, session: AsyncSession, db: Runtime
) -> None:
    await _prescriber(session, db, ALICE)
    pharmacy = await _pharmacy(session, 5002, "Kingsway Pharmacy Leeds")
    await session.close()  # the test's own session holds nothing either
    watching = _WatchingPlatform(db)
    saved = db.services.get("erx")
    db.services["erx"] = watching
    try:
        response = await _check(as_admin, f"/admin/pharmacies/{pharmacy.id}/check")
    finally:
        if saved is None:
            db.services.pop("erx", None)
        else:
            db.services["erx"] = saved
    assert response.status_code == 303
    assert watching.open_transactions == [0]


async def test_checking_an_unknown_item_is_404_and_a_bad_id_is_no_500(
    as_admin: httpx.AsyncClient, db: Runtime, admin: User
) -> None:
    missing = uuid.uuid4()
    assert (await _check(as_admin, f"/admin/pharmacies/{missing}/check")).status_code == 404
    assert (await _check(as_admin, f"/admin/prescribers/{missing}/check")).status_code == 404
    assert (await _check(as_admin, "/admin/pharmacies/not-an-id/check")).status_code == 422
    with pytest.raises(LookupError):
        await check_pharmacy(db, missing, actor_id=admin.id)


async def test_check_needs_the_csrf_token(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    pharmacy = await _pharmacy(session, 5002, "Kingsway Pharmacy Leeds")
    response = await as_admin.post(f"/admin/pharmacies/{pharmacy.id}/check", data={})
    assert response.status_code == 403
    await session.refresh(pharmacy)
    assert pharmacy.health_checked_at is None


async def test_a_region_a_pharmacy_is_checked_without_the_platform(
    as_admin: httpx.AsyncClient, session: AsyncSession
) -> None:
    emailed = await factories.make_pharmacy(session, "A", name="Email Pharmacy", email=None)
    await session.commit()
    response = await _check(as_admin, f"/admin/pharmacies/{emailed.id}/check")
    assert response.headers["location"].endswith("done=checked-fail")
    await session.refresh(emailed)
    assert "no email address" in (emailed.health_detail or "")
    assert emailed.withheld_at is None  # only a platform rejection withholds

    emailed.email = "email-pharmacy@example.com"
    await session.commit()
    response = await _check(as_admin, f"/admin/pharmacies/{emailed.id}/check")
    assert response.headers["location"].endswith("done=checked-ok")
    await session.refresh(emailed)
    assert emailed.health_status == "ok" and "sends by email" in (emailed.health_detail or "")
