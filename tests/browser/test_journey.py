"""The case study's first demo in a real browser, for both regions, plus the unhappy paths.

Each journey: the patient signs in, picks the region, types in the pharmacy search and
chooses from the addresses shown, sends, and sees the confirmation; the pharmacy then acts
on its side (Region B: the sandbox mailbox and portal, choosing "All Other Pharmacies";
Region A: the mail catcher and the confirmation link) and the patient's open page turns to
"Dispensed" by itself - the test marks the page's ``window`` first and checks the mark is
still there, proving no reload or navigation happened.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.models import Pharmacy
from rxroute.prescriptions.reference import short_reference
from rxroute.seed import data
from rxroute.web.patient_pages import FAILURE_HEADLINE
from tests.browser.conftest import DESKTOP, PHONE, Shots, Stack

LIVE_TIMEOUT = 30_000


async def _patient_page(browser: Any, stack: Stack) -> Page:
    context = await browser.new_context(viewport=PHONE, base_url=stack.url)
    context.set_default_timeout(15_000)
    page: Page = await context.new_page()
    return page


async def _desktop_page(browser: Any) -> Page:
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    page: Page = await context.new_page()
    return page


async def _sign_in(page: Page, shots: Shots | None = None) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(data.DEMO_PATIENT_EMAIL)
    await page.get_by_label("Password").fill(data.DEMO_PASSWORD)
    if shots:
        await shots.take(page, "sign-in", key="01-sign-in")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/prescriptions$"))
    await expect(page.get_by_role("heading", name="My prescriptions")).to_be_visible()


async def _send(
    page: Page,
    stack: Stack,
    prescription_id: uuid.UUID,
    region: str,
    query: str,
    shots: Shots,
    *,
    pick: str | None = None,
    key: str | None = None,
) -> str:
    """Open the prescription, pick the region, search, choose, send; the chosen name."""
    await page.goto(f"/prescriptions/{prescription_id}")
    radio = page.locator(f"#region-{region}")
    await radio.check()
    await expect(radio).to_be_checked()
    search = page.get_by_role("combobox", name="Find your pharmacy")
    await search.fill("")
    await search.press_sequentially(query, delay=40)
    # The list shows the answer to what was typed (not an earlier, shorter query).
    await expect(page.locator("#pharmacy-results")).to_have_attribute("data-query", query)
    await expect(page.locator("#pharmacy-results")).to_have_attribute("aria-busy", "false")
    options = page.get_by_role("option")
    if pick is not None:
        option = options.filter(has_text=pick).first
    else:
        option = options.filter(has_not_text="Boots").first
    await expect(option).to_be_visible()
    await expect(page.locator("#results-count")).to_contain_text("found")
    # Every result shows the pharmacy's full address as the patient types.
    texts = await options.all_inner_texts()
    assert texts
    for text in texts:
        assert query.lower() in text.lower(), f"{text!r} does not match {query!r}"
        assert re.search(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", text), f"no postcode in {text!r}"
    await shots.take(
        page, "pharmacy-search", key=key and f"{key}-pharmacy-search", top="#send-heading"
    )
    name = (await option.locator("strong").inner_text()).strip()
    await option.click()
    await expect(page.locator("#chosen-name")).to_have_text(name)
    await expect(page.locator("#chosen-address")).not_to_be_empty()
    await page.get_by_role("button", name="Continue").click()
    # The confirm step: the pharmacy, its address and what happens next, then send.
    await expect(page.locator("#confirm-pharmacy-name")).to_have_text(name)
    await expect(page.locator("#confirm-pharmacy-address")).not_to_be_empty()
    await expect(page.locator("#next-steps")).to_contain_text(name)
    await expect(page.locator("#confirm-send")).to_be_in_viewport()
    await page.locator("#confirm-send").click()
    await expect(page).to_have_url(re.compile(rf"/prescriptions/{prescription_id}\?sent=1$"))
    await expect(page.locator("#confirmation")).to_contain_text(f"Sent for processing to {name}")
    await expect(page.get_by_text("Reload this page to see")).to_be_hidden()
    return name


async def _mark(page: Page) -> None:
    await page.evaluate("window.__marker = 1")


async def _still_marked(page: Page) -> None:
    assert await page.evaluate("window.__marker") == 1, "the patient's page was reloaded"


async def test_region_b_first_demo(browser: Any, stack: Stack, shots: Shots) -> None:
    page = await _patient_page(browser, stack)
    await _sign_in(page, shots)
    await shots.take(page, "my-prescriptions", key="02-my-prescriptions")
    prescription_id = await stack.draft("B")
    name = await _send(page, stack, prescription_id, "B", "leeds", shots, key="03")
    await _mark(page)
    status = page.locator("#status")
    await expect(status).to_have_text("Signed: your pharmacy can see it", timeout=LIVE_TIMEOUT)
    timeline = page.locator("#timeline")
    # Each line says what the pharmacy knows: nothing until the prescriber signed.
    await expect(timeline).to_contain_text("waiting for your prescriber to sign")
    await expect(timeline).to_contain_text("Signed by your prescriber: the pharmacy can now see it")
    await expect(timeline.locator("li").first).to_contain_text("Written by your prescriber")
    await shots.take(
        page, "confirmation-timeline", key="04-confirmation-and-timeline", top="#confirmation"
    )
    sent = await stack.prescription(prescription_id)
    assert sent.provider_prescription_id, "the platform's prescription ID was not recorded"

    # The pharmacy's side: the platform's email in the sandbox mailbox, then its portal.
    pharmacy = await _desktop_page(browser)
    await pharmacy.goto(f"{stack.sandbox.url}/mailbox")
    link = pharmacy.get_by_role("link", name=f"Open prescription {sent.provider_prescription_id}")
    await expect(link).to_be_visible()
    await expect(pharmacy.locator("article").first).to_contain_text(name)
    await shots.take(pharmacy, "sandbox-mailbox")
    await link.click()
    await expect(pharmacy.get_by_role("heading", level=1)).to_contain_text(
        sent.provider_prescription_id
    )
    group = pharmacy.get_by_label("Pharmacy group")
    options = await group.locator("option").all_inner_texts()
    assert "All Other Pharmacies" in options and "Boots" in options
    await group.select_option("All Other Pharmacies")
    await shots.take(
        pharmacy, "sandbox-portal", key="05-sandbox-portal-group", top="h2:text-is('Medicines')"
    )
    await pharmacy.get_by_role("button", name="Mark as dispensed").click()
    await expect(pharmacy.locator("body")).to_contain_text("dispensed")
    await shots.take(pharmacy, "sandbox-dispensed")

    # Back on the patient's page, untouched since: the webhook moved it to dispensed.
    await expect(status).to_have_text("Dispensed", timeout=LIVE_TIMEOUT)
    await expect(timeline).to_contain_text("Dispensed by the pharmacy")
    # Drawn by the server, swapped in by the script: local time, the zone named.
    await expect(timeline.locator("time").last).to_have_text(
        re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2} (GMT|BST)$")
    )
    await _still_marked(page)
    assert (await stack.prescription(prescription_id)).status == "dispensed"
    await shots.take(page, "dispensed", key="06-dispensed-timeline", top="#status-panel")


async def test_region_a_email_and_confirmation_link(
    browser: Any, stack: Stack, shots: Shots
) -> None:
    page = await _patient_page(browser, stack)
    await _sign_in(page)
    prescription_id = await stack.draft("A")
    await _send(page, stack, prescription_id, "A", "edinburgh", shots)
    await _mark(page)
    status = page.locator("#status")
    await expect(status).to_have_text("Emailed to pharmacy", timeout=LIVE_TIMEOUT)
    # The patient is emailed too, and the live timeline says so.
    await expect(page.locator("#timeline")).to_contain_text(
        "We emailed you: sent to pharmacy", timeout=LIVE_TIMEOUT
    )
    await shots.take(page, "emailed", top="#confirmation")

    mail = await _desktop_page(browser)
    await mail.goto(stack.mail.web_url)
    # The pharmacy's email (the patient's own emails are in the catcher too).
    message = mail.get_by_role("link", name=re.compile("^Private prescription"))
    await expect(message.first).to_be_visible()
    await message.first.click()
    await expect(mail.locator("body")).to_contain_text(short_reference(prescription_id))
    await expect(mail.get_by_role("link", name=re.compile(r"\.pdf$"))).to_be_visible()
    await shots.take(mail, "mail-catcher-message", key="07-region-a-email")
    confirm = mail.locator('a[href*="/pharmacy/confirm/"]').first
    href = await confirm.get_attribute("href")
    assert href and href.startswith(f"{stack.url}/pharmacy/confirm/")
    await mail.goto(href)
    await expect(mail.get_by_role("heading", level=2)).to_contain_text(
        short_reference(prescription_id)
    )
    assert data.demo_patient().last_name not in await mail.content()
    await shots.take(mail, "confirm-page", key="08-region-a-confirm")
    await mail.get_by_role("button", name="Confirm dispensed").click()
    await expect(mail.locator("#notice")).to_have_text("Thank you: recorded as dispensed.")
    await shots.take(mail, "confirmed")

    await expect(status).to_have_text("Dispensed", timeout=LIVE_TIMEOUT)
    await expect(page.locator("#timeline")).to_contain_text("Emailed to the pharmacy")
    await _still_marked(page)
    await shots.take(page, "dispensed", top="#status-panel")

    # The patient's emails in the mail catcher: sent (naming the pharmacy), then dispensed.
    await mail.goto(stack.mail.web_url)
    await expect(
        mail.get_by_role("link", name=re.compile("^Your prescription has been dispensed"))
    ).to_be_visible(timeout=LIVE_TIMEOUT)
    await mail.get_by_role(
        "link", name=re.compile("^Your prescription has been sent to your pharmacy")
    ).click()
    await expect(mail.locator("body")).to_contain_text(str(prescription_id))
    assert data.demo_patient().last_name not in await mail.content()
    await shots.take(mail, "patient-email", key="13-patient-email")


async def test_wrong_password_keeps_the_email(browser: Any, stack: Stack, shots: Shots) -> None:
    page = await _patient_page(browser, stack)
    await page.goto("/login")
    await page.get_by_label("Email").fill(data.DEMO_PATIENT_EMAIL)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Email or password is wrong.")
    await expect(page.get_by_label("Email")).to_have_value(data.DEMO_PATIENT_EMAIL)
    await expect(page.get_by_label("Password")).to_have_value("")
    await shots.take(page, "wrong-password")
    await page.get_by_label("Email").fill("")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#email-error")).to_have_text("Enter your email address.")
    await expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")


async def test_failed_send_explains_and_offers_another_try(
    browser: Any, stack: Stack, shots: Shots
) -> None:
    async with stack.runtime.sessionmaker() as session:
        await _unknown_contact_pharmacy(session)
    page = await _patient_page(browser, stack)
    await _sign_in(page)
    prescription_id = await stack.draft("B")
    await _send(page, stack, prescription_id, "B", "unlisted", shots, pick="Unlisted")
    await _mark(page)
    await expect(page.locator("#status")).to_have_text("Not sent", timeout=LIVE_TIMEOUT)
    failure = page.locator("#failure")
    await expect(failure).to_be_visible()
    await expect(failure).to_contain_text(FAILURE_HEADLINE)
    await expect(failure).to_contain_text("This pharmacy cannot take the prescription")
    # The platform's own words are for support: never on the patient's page.
    await expect(page.locator("body")).not_to_contain_text("The selected contact is invalid.")
    # Success is never shown beside the failure.
    await expect(page.locator("#confirmation")).to_have_count(0)
    await _still_marked(page)
    await shots.take(page, "failed-unlisted", top="#status-panel")
    await page.get_by_role("link", name="Choose another pharmacy").click()
    await expect(page.get_by_role("button", name="Continue")).to_be_visible()


async def test_send_form_works_without_javascript(browser: Any, stack: Stack, shots: Shots) -> None:
    context = await browser.new_context(
        viewport=PHONE, base_url=stack.url, java_script_enabled=False
    )
    context.set_default_timeout(15_000)
    page = await context.new_page()
    await _sign_in(page)
    prescription_id = await stack.draft("B")
    await page.goto(f"/prescriptions/{prescription_id}")
    await page.get_by_label("Find your pharmacy").fill("leeds")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#results-count")).to_contain_text("found")
    option = page.get_by_role("option").filter(has_not_text="Boots").first
    name = (await option.locator("strong").inner_text()).strip()
    await option.click()
    await expect(page.locator("#chosen-name")).to_have_text(name)
    await shots.take(page, "no-js-chosen", top="#send-heading")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#confirm-pharmacy-name")).to_have_text(name)
    await page.locator("#confirm-send").click()
    await expect(page.locator("#confirmation")).to_contain_text(f"Sent for processing to {name}")
    # Without the script nothing updates by itself: the page says to reload instead.
    await expect(page.locator("#confirmation")).to_contain_text("Reload this page")
    await expect(page.get_by_text("This page updates by itself")).to_be_hidden()


async def _unknown_contact_pharmacy(session: AsyncSession) -> None:
    """A Region B pharmacy whose platform contact ID the platform does not know."""
    session.add(
        Pharmacy(
            name="Unlisted Pharmacy Leeds",
            address_line1="9 Nowhere Lane",
            address_line2="",
            town="Leeds",
            postcode="LS9 9ZZ",
            region="B",
            email="unlisted@example.com",
            platform_contact_id=9999,
        )
    )
    await session.commit()
