"""The patient pages as a patient reads them: regions explained and suggested, the confirm
step, each failure cause in its own words, pagination, the last pharmacy, the timeline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from markupsafe import escape
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.deliveries import ledger
from rxroute.models import Patient, Pharmacy, Prescriber, Prescription, Role, User
from rxroute.prescriptions.history import record_status
from rxroute.prescriptions.lifecycle import Source, Status
from rxroute.prescriptions.reference import short_reference
from rxroute.regions import DEFAULT_REGION_DISPLAY, postcode_area, suggest_region
from rxroute.runtime import Runtime
from rxroute.web.failure_text import (
    DOWN,
    EARLIER_COPY,
    MISSING,
    REFUSED,
    RETRYING,
    SENDING_HINT,
    SLOW_HINT,
    explain_failure,
)
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
)
from tests.web.helpers import HTML, checked_region, csrf_of, region_radios, sign_in

# --- regions: settings and suggestion ------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "postcode", "expected"),
    [
        ("GB", "EH1 1YZ", "A"),
        ("gb", "g2 3ab", "A"),
        ("GB", "LS1 4AP", "B"),
        ("GB", "M1 1AE", "B"),
        ("GB", "CF10 1AA", None),  # Wales: neither default region
        ("GB", "BT1 1AA", None),  # Northern Ireland
        ("FR", "EH1 1YZ", None),  # another country
        ("GB", "", None),
    ],
)
def test_the_address_suggests_a_region_or_none(
    country: str, postcode: str, expected: str | None
) -> None:
    assert suggest_region(DEFAULT_REGION_DISPLAY, ["A", "B"], country, postcode) == expected


def test_a_region_not_served_is_never_suggested() -> None:
    assert suggest_region(DEFAULT_REGION_DISPLAY, ["B"], "GB", "EH1 1YZ") is None


def test_postcode_area_is_the_leading_letters() -> None:
    assert postcode_area(" eh1 1yz") == "EH"
    assert postcode_area("G2") == "G"
    assert postcode_area("12345") == ""


def test_region_display_settings_are_validated() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        region_display={
            "a": {"name": " Scotland ", "explanation": "By email.", "countries": ["gb"]}
        },
    )
    shown = settings.region_shown("A")
    assert (shown.name, shown.countries) == ("Scotland", ("GB",))
    # A served region nobody described reads as "Region B", with no suggestion.
    assert settings.region_shown("B").name == "Region B"
    for bad in (
        {"A": {"name": "", "explanation": "x"}},
        {"A": {"name": "x", "explanation": "   "}},
        {"A": {"name": "x", "explanation": "y", "countries": ["GBR"]}},
        {"A": {"name": "x", "explanation": "y", "postcode_areas": ["E1"]}},
        {"A": {"name": "x", "explanation": "y", "colour": "red"}},
        {"a": {"name": "x", "explanation": "y"}, "A": {"name": "z", "explanation": "y"}},
    ):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, region_display=bad)  # type: ignore[call-arg]


# --- the pages -------------------------------------------------------------------------------


@dataclass
class World:
    patient: Patient
    user: User
    prescriber: Prescriber
    draft: Prescription
    leeds: Pharmacy
    edinburgh: Pharmacy


@pytest.fixture
async def world(session: AsyncSession, db: Runtime) -> World:
    patient = await make_patient(session, region="")
    user = await make_user(session, Role.PATIENT, patient=patient)
    prescriber = await make_prescriber(session, db.secret_box)
    draft = await make_prescription(session, patient, prescriber)
    leeds = await make_pharmacy(session, "B", name="Wellbeing Leeds Central", postcode="LS1 4AP")
    edinburgh = await make_pharmacy(
        session, "A", name="Harbour Chemist", town="Edinburgh", postcode="EH1 1YZ"
    )
    await session.commit()
    return World(patient, user, prescriber, draft, leeds, edinburgh)


async def test_each_region_is_named_and_explained_for_screen_readers(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.user.email)
    page = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    radios = region_radios(page)
    assert set(radios) == {"A", "B"}
    for code, attributes in radios.items():
        described = re.search(r'aria-describedby="([^"]+)"', attributes)
        assert described, f"region {code} has no explanation tied to it"
        explanation = re.search(rf'id="{described.group(1)}">([^<]+)<', page)
        assert explanation is not None
        assert explanation.group(1) == DEFAULT_REGION_DISPLAY[code].explanation
    assert "> England</label>" in page and "> Scotland</label>" in page
    assert "Region A" not in page and "Region B" not in page


async def test_the_region_is_suggested_from_the_address(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    world.patient.postcode = "EH3 9AA"
    await session.commit()
    await sign_in(client, world.user.email)
    page = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    assert checked_region(page) == "A"
    assert "Suggested from your address" in page


async def test_no_region_is_preselected_when_the_address_does_not_say(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    world.patient.postcode = "CF10 1AA"
    await session.commit()
    await sign_in(client, world.user.email)
    page = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    assert checked_region(page) is None
    assert "Suggested from your address" not in page


async def test_the_confirm_step_shows_pharmacy_address_and_next_steps(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await sign_in(client, world.user.email)
    url = f"/prescriptions/{world.draft.id}/send/confirm"
    page = await client.get(
        url, params={"region": "A", "pharmacy_id": str(world.edinburgh.id)}, headers=HTML
    )
    assert page.status_code == 200
    text = page.text
    assert 'id="confirm-pharmacy-name">Harbour Chemist<' in text
    assert "2 High Street, Edinburgh, EH1 1YZ" in text
    assert "We email the prescription to Harbour Chemist as a secure PDF" in text
    assert 'id="confirm-region">Scotland<' in text
    assert short_reference(world.draft.id) in text
    assert re.search(
        r'<button type="submit" name="action" value="confirm"[^>]*id="confirm-send"', text
    )
    # The way back keeps the choice.
    assert f"/prescriptions/{world.draft.id}?region=A&amp;pharmacy_id={world.edinburgh.id}" in text
    # A pharmacy of another region is refused on the send form, naming the field.
    wrong = await client.get(
        url, params={"region": "B", "pharmacy_id": str(world.edinburgh.id)}, headers=HTML
    )
    assert wrong.status_code == 422
    assert 'id="error-summary"' in wrong.text and "autofocus" in wrong.text
    assert "This pharmacy is in region A, not B" in wrong.text
    # Confirming needs the CSRF token, like every POST.
    refused = await client.post(
        f"/prescriptions/{world.draft.id}/send",
        data={"region": "A", "pharmacy_id": str(world.edinburgh.id), "action": "confirm"},
        headers=HTML,
    )
    assert refused.status_code == 403
    sent = await client.post(
        f"/prescriptions/{world.draft.id}/send",
        data={
            "csrf_token": csrf_of(page),
            "region": "A",
            "pharmacy_id": str(world.edinburgh.id),
            "action": "confirm",
        },
        headers=HTML,
    )
    assert sent.status_code == 303
    # Back from signing in again (no choice in the URL): the prescription page, not an error.
    bare = await client.get(url, headers=HTML)
    assert bare.status_code == 303
    assert bare.headers["location"] == f"/prescriptions/{world.draft.id}"
    await session.refresh(world.draft)
    assert (world.draft.status, world.draft.pharmacy_id) == ("queued", world.edinburgh.id)


async def _failed(session: AsyncSession, world: World, reason: str) -> None:
    await record_status(session, world.draft.id, Status.QUEUED, source=Source.PATIENT)
    await record_status(session, world.draft.id, Status.SENDING, source=Source.WORKER)
    world.draft.failure_reason = reason
    world.draft.pharmacy_id = world.leeds.id
    world.draft.region = "B"
    await record_status(session, world.draft.id, Status.FAILED, source=Source.WORKER)
    await session.commit()


@pytest.mark.parametrize(
    ("reason", "worded", "action"),
    [
        (
            "not sent after 6 attempts; last error: login: platform answered HTTP 502",
            DOWN,
            "Try again",
        ),
        ("The selected contact is invalid.", REFUSED, "Choose another pharmacy"),
        ("not sent: pharmacy has no platform contact id", MISSING, "Choose another pharmacy"),
        ("the earlier delivery 1 could not be withdrawn: HTTP 500", EARLIER_COPY, None),
    ],
    ids=["platform-down", "refused", "missing-details", "earlier-copy"],
)
async def test_each_failure_cause_has_its_own_words_and_no_technical_reason(
    client: httpx.AsyncClient,
    session: AsyncSession,
    world: World,
    reason: str,
    worded: object,
    action: str | None,
) -> None:
    assert explain_failure(reason) is worded
    await _failed(session, world, reason)
    await sign_in(client, world.user.email)
    # Even arriving from the send (?sent=1), success is not shown beside the failure.
    page = (await client.get(f"/prescriptions/{world.draft.id}?sent=1", headers=HTML)).text
    assert str(escape(explain_failure(reason).cause)) in page
    assert str(escape(explain_failure(reason).next_step)) in page
    assert 'id="confirmation"' not in page and "Sent for processing" not in page
    for technical in ("HTTP 502", "HTTP 500", "platform contact id", "selected contact"):
        assert technical not in page
    if action is None:
        assert 'id="failure-action"' not in page
    else:
        assert f'id="failure-action">{action}<' in page
    if worded is DOWN:
        # Trying again needs no new choice: the same pharmacy is already chosen.
        assert f'id="pharmacy-id" value="{world.leeds.id}"' in page
        assert f"/send/confirm?region=B&amp;pharmacy_id={world.leeds.id}" in page
        assert "choosing another pharmacy would not help" in page


async def test_a_retry_in_progress_says_we_are_retrying(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await sign_in(client, world.user.email)
    page = await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)
    await client.post(
        f"/prescriptions/{world.draft.id}/send",
        data={
            "csrf_token": csrf_of(page),
            "region": "B",
            "pharmacy_id": str(world.leeds.id),
            "action": "confirm",
        },
        headers=HTML,
    )
    before = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    assert "This usually takes less than a minute." in before and RETRYING not in before
    prescription = await session.get(Prescription, world.draft.id, populate_existing=True)
    assert prescription is not None
    delivery = await ledger.current_delivery(session, prescription)
    assert delivery is not None
    await record_status(
        session, world.draft.id, Status.SENDING, source=Source.WORKER, delivery_id=delivery.id
    )
    session.add(
        ledger.attempt_row(
            delivery,
            "issue",
            "retryable",
            datetime.now(UTC),
            "login: platform answered HTTP 502",
            attempt=1,
        )
    )
    await session.commit()
    after = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    assert str(escape(RETRYING)) in after
    assert "HTTP 502" not in after


async def test_search_says_how_many_it_shows_and_offers_more(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    for index in range(35):
        await make_pharmacy(session, "B", name=f"Chemist {index:02d}", town="York")
    await session.commit()  # 36 in region B with the Leeds one
    await sign_in(client, world.user.email)
    base = f"/prescriptions/{world.draft.id}"
    first = (await client.get(base, params={"region": "B", "q": ""}, headers=HTML)).text
    assert "Showing 20 of 36 pharmacies." in first
    assert first.count('name="choose"') == 20
    assert 'id="show-more"' in first and 'value="40"' in first
    page = await client.get(base, headers=HTML)
    more = await client.post(
        f"{base}/send",
        data={"csrf_token": csrf_of(page), "region": "B", "q": "", "shown": "40"},
        headers=HTML,
    )
    assert more.status_code == 303
    everything = (await client.get(more.headers["location"], headers=HTML)).text
    assert everything.count('name="choose"') == 36
    assert "36 pharmacies found" in everything and 'id="show-more"' not in everything
    typed = (await client.get(base, params={"region": "B", "q": "chemist"}, headers=HTML)).text
    assert "Showing the first 20 matches." in typed
    # A silly count is bounded, not an error.
    odd = await client.get(base, params={"region": "B", "q": "", "shown": "99999"}, headers=HTML)
    assert odd.status_code == 200


async def test_the_last_pharmacy_is_offered_again(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    earlier = await make_prescription(
        session,
        world.patient,
        world.prescriber,
        region="A",
        pharmacy_id=world.edinburgh.id,
        status="dispensed",
    )
    earlier.updated_at = datetime.now(UTC) - timedelta(days=30)
    await session.commit()
    await sign_in(client, world.user.email)
    page = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    assert f'id="pharmacy-id" value="{world.edinburgh.id}"' in page
    assert "Your pharmacy last time" in page
    assert checked_region(page) == "A"
    # A pharmacy taken off the list is not offered.
    world.edinburgh.active = False
    await session.commit()
    page = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    assert 'id="pharmacy-id" value=""' in page
    assert "Your pharmacy last time" not in page


async def test_the_timeline_says_what_the_pharmacy_knows(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await sign_in(client, world.user.email)
    page = await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)
    await client.post(
        f"/prescriptions/{world.draft.id}/send",
        data={
            "csrf_token": csrf_of(page),
            "region": "B",
            "pharmacy_id": str(world.leeds.id),
            "action": "confirm",
        },
        headers=HTML,
    )
    prescription = await session.get(Prescription, world.draft.id, populate_existing=True)
    assert prescription is not None
    delivery = await ledger.current_delivery(session, prescription)
    assert delivery is not None
    now = datetime.now(UTC)
    for offset, status in enumerate((Status.SENDING, Status.ISSUED, Status.SIGNED), start=1):
        await record_status(
            session,
            world.draft.id,
            status,
            source=Source.WORKER if status is not Status.SIGNED else Source.WEBHOOK,
            delivery_id=delivery.id,
            occurred_at=now + timedelta(seconds=offset),
        )
    prescription.provider_prescription_id = "201999"
    await session.commit()
    text = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    timeline = text[text.index('id="timeline"') :]
    labels = re.findall(r'<span class="tl-label">([^<]+)</span>', timeline)
    assert labels == [
        "Written by your prescriber",
        "You chose the pharmacy; waiting to send",
        "On the e-prescription system, waiting for your prescriber to sign",
        "Signed by your prescriber: the pharmacy can now see it",
    ]
    assert "Sent to pharmacy" not in timeline
    assert 'id="status" class="status status-signed">Signed: your pharmacy can see it<' in text
    # The reference is the platform's own ID once it is there: what the pharmacy sees.
    assert 'id="rx-ref">201999<' in text
    listing = (await client.get("/prescriptions", headers=HTML)).text
    assert "Reference 201999" in listing and str(world.draft.id) not in listing.replace(
        f"/prescriptions/{world.draft.id}", ""
    )


async def test_without_javascript_the_page_says_to_reload(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await record_status(session, world.draft.id, Status.QUEUED, source=Source.PATIENT)
    world.draft.pharmacy_id = world.leeds.id
    await session.commit()
    await sign_in(client, world.user.email)
    text = (await client.get(f"/prescriptions/{world.draft.id}?sent=1", headers=HTML)).text
    # "Updates by itself" only where the script runs (jsonly); the no-JS line says reload.
    assert '<span class="jsonly">This page updates by itself' in text
    assert 'class="small muted nojs" id="reload-hint"' in text
    assert text.count("updates by itself") == 1


async def test_a_send_that_takes_long_says_so(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await record_status(
        session,
        world.draft.id,
        Status.QUEUED,
        source=Source.PATIENT,
        occurred_at=datetime.now(UTC) - timedelta(minutes=4),
    )
    world.draft.pharmacy_id = world.leeds.id
    await session.commit()
    await sign_in(client, world.user.email)
    text = (await client.get(f"/prescriptions/{world.draft.id}", headers=HTML)).text
    assert str(escape(SLOW_HINT)) in text
    assert SENDING_HINT not in text


async def test_phone_and_opening_hours_show_when_known(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    world.edinburgh.phone = "+44 7700 900456"
    world.edinburgh.opening_hours = "Mon-Fri 9:00-18:00"
    await session.commit()
    await sign_in(client, world.user.email)
    base = f"/prescriptions/{world.draft.id}"
    results = (await client.get(base, params={"region": "A", "q": "harbour"}, headers=HTML)).text
    assert "+44 7700 900456 &middot; Mon-Fri 9:00-18:00" in results
    confirm = await client.get(
        f"{base}/send/confirm",
        params={"region": "A", "pharmacy_id": str(world.edinburgh.id)},
        headers=HTML,
    )
    assert 'href="tel:+447700900456"' in confirm.text
    assert 'class="pharmacy-hours">Mon-Fri 9:00-18:00<' in confirm.text
    # Unknown: nothing is said (no empty "Phone" line).
    leeds = await client.get(
        f"{base}/send/confirm",
        params={"region": "B", "pharmacy_id": str(world.leeds.id)},
        headers=HTML,
    )
    assert "pharmacy-contact" not in leeds.text


async def test_the_change_form_shows_more_without_javascript(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    for index in range(25):
        await make_pharmacy(session, "B", name=f"Chemist {index:02d}", town="York")
    await record_status(session, world.draft.id, Status.QUEUED, source=Source.PATIENT)
    world.draft.pharmacy_id = world.leeds.id
    world.draft.region = "B"
    await session.commit()
    await sign_in(client, world.user.email)
    change = f"/prescriptions/{world.draft.id}/change"
    first = await client.get(
        change, params={"region": "B", "q": "", "action": "search", "pharmacy_id": ""}
    )
    assert "Showing 20 of 26 pharmacies." in first.text
    more = await client.get(
        change, params={"region": "B", "q": "", "pharmacy_id": "", "shown": "40"}, headers=HTML
    )
    assert more.status_code == 200
    assert more.text.count('name="choose"') == 26
