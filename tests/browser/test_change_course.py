"""Changing course in a real browser: another pharmacy after sending, for both regions.

Region B: the patient sends, then changes pharmacy through the confirm step (which names the
new pharmacy and its address); the worker voids the first platform copy before issuing the
new one, and the patient's timeline says which pharmacy each step was about. Region A: the
same change after the email went out; the first pharmacy receives a cancellation email in
the mail catcher.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from playwright.async_api import Page, expect

from rxroute.prescriptions.reference import short_reference
from tests.browser.conftest import Shots, Stack
from tests.browser.test_journey import (
    LIVE_TIMEOUT,
    _desktop_page,
    _patient_page,
    _send,
    _sign_in,
)

SENT_TO_B = re.compile("Waiting for your prescriber to sign|Signed: your pharmacy can see it")


async def _change_pharmacy(
    page: Page, prescription_id: uuid.UUID, query: str, old: str, shots: Shots, *, key: str | None
) -> str:
    """From the prescription page: search, choose another pharmacy, confirm; its name."""
    form = page.locator("#change-form")
    await expect(form).to_be_visible()
    search = form.get_by_role("combobox", name="Find your pharmacy")
    await search.fill("")
    await search.press_sequentially(query, delay=30)
    results = page.locator("#pharmacy-results")
    await expect(results).to_have_attribute("data-query", query)
    await expect(results).to_have_attribute("aria-busy", "false")
    option = page.get_by_role("option").filter(has_not_text=old).filter(has_not_text="Boots").first
    await expect(option).to_be_visible()
    name = (await option.locator("strong").inner_text()).strip()
    address = (await option.locator("span").inner_text()).strip()
    await option.click()
    await expect(page.locator("#chosen-name")).to_have_text(name)
    await page.locator("#change-button").click()

    # The confirm step names the new pharmacy and its address, and what happens to the old.
    await expect(page).to_have_url(re.compile(rf"/prescriptions/{prescription_id}/change\?"))
    await expect(page.locator("#new-pharmacy-name")).to_have_text(name)
    await expect(page.locator("#new-pharmacy-address")).to_have_text(address)
    await expect(page.locator("#old-pharmacy-name")).to_have_text(old)
    await page.locator("#action-reason").fill("closer to where I work")
    await shots.take(page, "change-confirm", key=key, top="h1")
    await page.locator("#confirm-send").click()
    await expect(page).to_have_url(re.compile(rf"/prescriptions/{prescription_id}\?changed=1$"))
    await expect(page.locator("#confirmation")).to_contain_text(f"now going to {name}")
    return name


async def _platform_copies(stack: Stack, prescription_id: uuid.UUID) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=10) as http:
        listing = (await http.get("/_sandbox/prescriptions")).json()
    return [
        record
        for record in listing["prescriptions"]
        if record.get("client_ref_id") == str(prescription_id)
    ]


async def test_region_b_change_of_pharmacy(browser: Any, stack: Stack, shots: Shots) -> None:
    page = await _patient_page(browser, stack)
    await _sign_in(page)
    prescription_id = await stack.draft("B")
    first = await _send(page, stack, prescription_id, "B", "leeds", shots)
    status = page.locator("#status")
    await expect(status).to_have_text(SENT_TO_B, timeout=LIVE_TIMEOUT)

    second = await _change_pharmacy(
        page, prescription_id, "leeds", first, shots, key="10-change-pharmacy-confirm"
    )
    # The worker voids the first copy, then issues to the new pharmacy; the page follows.
    await expect(status).to_have_text(SENT_TO_B, timeout=LIVE_TIMEOUT)
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text(
        f"Cancelled at the previous pharmacy · {first}", timeout=LIVE_TIMEOUT
    )
    await expect(timeline).to_contain_text(f"Going to a different pharmacy · {second}")
    await expect(timeline).to_contain_text(
        f"On the e-prescription system, waiting for your prescriber to sign · {second}"
    )
    await expect(page.locator("#status-line")).to_contain_text(second)
    await shots.take(page, "rerouted-timeline", key="11-rerouted-timeline", top="#status-panel")

    copies = await _platform_copies(stack, prescription_id)
    live = [c for c in copies if c["status"] not in ("voided", "cancelled")]
    assert len(copies) == 2 and len(live) == 1, copies
    prescription = await stack.prescription(prescription_id)
    assert prescription.provider_prescription_id == live[0]["id"]


async def test_region_a_change_of_pharmacy_emails_a_cancellation(
    browser: Any, stack: Stack, shots: Shots
) -> None:
    page = await _patient_page(browser, stack)
    await _sign_in(page)
    prescription_id = await stack.draft("A")
    first = await _send(page, stack, prescription_id, "A", "edinburgh", shots)
    status = page.locator("#status")
    await expect(status).to_have_text("Emailed to pharmacy", timeout=LIVE_TIMEOUT)

    second = await _change_pharmacy(page, prescription_id, "edinburgh", first, shots, key=None)
    await expect(page.locator("#timeline")).to_contain_text(
        f"Emailed to the pharmacy · {second}", timeout=LIVE_TIMEOUT
    )
    await expect(status).to_have_text("Emailed to pharmacy")

    # The first pharmacy was told not to dispense it, by name, with the reference.
    cancellations = [m for m in stack.mail.messages() if m.subject.startswith("CANCELLED")]
    assert len(cancellations) == 1, [m.subject for m in stack.mail.messages()]
    mail = await _desktop_page(browser)
    await mail.goto(stack.mail.web_url)
    await mail.get_by_role("link", name=re.compile(r"^CANCELLED - do not dispense")).click()
    body = mail.locator("body")
    await expect(body).to_contain_text(f"Hello {first}")
    await expect(body).to_contain_text(
        f"Private prescription {short_reference(prescription_id)} has been cancelled - do not "
        "dispense it."
    )
    await shots.take(mail, "cancellation-email", key="12-region-a-cancellation-email")
