"""Support in a real browser, at 1280 px and on a 390x844 phone: search → case → note →
change of pharmacy with a reason.

The demo patient's Region B draft is queued (as a patient's send would queue it, without its
job), so it sits in "queued" and support can find it by name and status. Support opens the
case (date of birth, phone and medicines shown; the ID has a working "Copy" button), adds a
note through its confirm step, then changes the pharmacy: the confirm step refuses a missing
reason, and once confirmed the worker sends it to the new pharmacy on the sandbox. No page
is wider than the screen: wide tables scroll inside their card.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from rxroute.deliveries import commands
from rxroute.models import Pharmacy, User
from rxroute.seed import data
from tests.browser.conftest import PHONE, Shots, Stack

LIVE_TIMEOUT = 30_000
WIDE = {"width": 1280, "height": 800}
NOTE = "Patient phoned: the first pharmacy is closed for a refit."


async def _page(browser: Any, stack: Stack, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(viewport=viewport, base_url=stack.url)
    context.set_default_timeout(15_000)
    page: Page = await context.new_page()
    return page


async def _queued_draft(stack: Stack) -> uuid.UUID:
    """The demo patient sends a Region B draft to a Leeds pharmacy; its job is not queued."""
    prescription_id = await stack.draft("B")
    async with stack.runtime.sessionmaker() as session, session.begin():
        patient = await session.scalar(select(User).where(User.email == data.DEMO_PATIENT_EMAIL))
        pharmacy = await session.scalar(
            select(Pharmacy)
            .where(
                Pharmacy.region == "B",
                Pharmacy.active,
                Pharmacy.platform_contact_id.is_not(None),
                Pharmacy.town == "Leeds",
            )
            .order_by(Pharmacy.name)
            .limit(1)
        )
        assert patient is not None and pharmacy is not None
        await commands.request_send(
            session, stack.runtime, patient, prescription_id, region="B", pharmacy_id=pharmacy.id
        )
    return prescription_id


async def _fits_the_screen(page: Page) -> None:
    """Nothing sticks out sideways: the page is no wider than the viewport."""
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the screen"


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
async def test_search_case_note_and_change_of_pharmacy(
    browser: Any, stack: Stack, shots: Shots, viewport: dict[str, int]
) -> None:
    prescription_id = await _queued_draft(stack)
    first = await stack.prescription(prescription_id)
    page = await _page(browser, stack, viewport)

    await page.goto("/login")
    await page.get_by_label("Email").fill(data.DEMO_SUPPORT_EMAIL)
    await page.get_by_label("Password").fill(data.DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.goto("/support")
    await expect(page.get_by_role("heading", name="Needs attention")).to_be_visible()

    # Search by part of the name and the status: a POST, nothing typed lands in the URL.
    await page.get_by_label("Patient name").fill("testpat")
    await page.get_by_label("Status").select_option("queued")
    await page.locator("#search-button").click()
    await expect(page).to_have_url(re.compile(r"/support/search$"))
    results = page.locator("#search-results")
    await expect(results).to_contain_text("Jamie Testpatient")
    await _fits_the_screen(page)
    await shots.take(
        page,
        "support-search",
        top="#results",
        key="15-support-search" if viewport is WIDE else None,
    )
    await results.get_by_role("link", name=str(prescription_id)).click()

    # The case: who the patient is, what is prescribed, a copy button beside the ID.
    await expect(page).to_have_url(re.compile(rf"/support/prescriptions/{prescription_id}$"))
    await expect(page.locator("#patient-dob")).to_contain_text("7 March 1985")
    await expect(page.locator("#patient-phone")).to_contain_text("+44 7700 900123")
    await expect(page.locator("#medicines li").first).to_be_visible()
    copy = page.get_by_role("button", name="Copy the prescription ID")
    await copy.click()
    await expect(copy).not_to_have_text("Copy")
    await _fits_the_screen(page)

    # A note: written, confirmed, then listed with its author.
    await page.locator("#note-new").fill(NOTE)
    await page.get_by_role("button", name="Add the note…").click()
    await expect(page.locator("#note-preview")).to_have_text(NOTE)
    await page.locator("#confirm-note").click()
    await expect(page).to_have_url(re.compile(rf"/support/prescriptions/{prescription_id}\?"))
    notes = page.locator("#case-notes")
    await expect(notes).to_contain_text(NOTE)
    await expect(notes).to_contain_text(f"{data.DEMO_SUPPORT_EMAIL} (support)")

    # Change the pharmacy: find one, choose it, confirm with a reason.
    await page.locator("#reroute-region").select_option("B")
    await page.locator("#reroute-q").fill("leeds")
    await page.get_by_role("button", name="Find pharmacies…").click()
    choose = page.locator("#reroute-results").get_by_role("button", name="Choose").first
    await expect(choose).to_be_visible()
    await _fits_the_screen(page)
    await choose.click()
    new_name = (await page.locator("#new-pharmacy-name").inner_text()).strip()
    assert first.pharmacy_id is not None
    await page.locator("#confirm-reroute").click()  # no reason yet
    await expect(page.locator("#form-error")).to_contain_text("reason: say why")
    await page.locator("#action-reason").fill("first pharmacy closed for a refit")
    await shots.take(page, "support-reroute-confirm", top="h1")
    await page.locator("#confirm-reroute").click()
    await expect(page).to_have_url(re.compile(r"\?done=rerouted$"))
    await expect(page.get_by_role("status")).to_contain_text("Re-routed")
    deliveries = page.locator("#deliveries")
    await expect(deliveries).to_contain_text("first pharmacy closed for a refit")
    await expect(deliveries).to_contain_text(f"by {data.DEMO_SUPPORT_EMAIL} (support)")
    await expect(deliveries).to_contain_text(new_name)
    await _fits_the_screen(page)

    # The worker sends it to the new pharmacy on the platform.
    for _ in range(60):
        now = await stack.prescription(prescription_id)
        if now.provider_prescription_id:
            break
        await page.wait_for_timeout(500)
    now = await stack.prescription(prescription_id)
    assert now.pharmacy_id != first.pharmacy_id
    assert now.provider_prescription_id, f"not sent to the platform: {now.status}"
    await page.reload()
    await expect(page.locator("#current-status")).not_to_have_text("queued")
    await shots.take(
        page,
        "support-case-after",
        top="#deliveries-heading",
        key="16-support-case" if viewport is WIDE else None,
    )
