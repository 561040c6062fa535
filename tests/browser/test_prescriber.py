"""In a real browser: the demo prescriber writes a draft, and picking a medicine fills in
its formulary defaults (the page's own script, under the strict CSP), without ever
overwriting what the prescriber typed."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from playwright.async_api import Page, Route, expect

from rxroute.seed import data
from tests.browser.conftest import Stack
from tests.browser.test_csp import _sign_in, _watched_page

ORLISTAT = "Orlistat 120mg capsules"
SEMAGLUTIDE = "Semaglutide 0.5mg/0.5ml solution for injection pre-filled pen"


async def _option(page: Page, description: str) -> str:
    value = await page.locator("#medicine-0 option", has_text=description).get_attribute("value")
    assert value
    return value


async def test_the_demo_prescriber_writes_a_draft_for_the_demo_patient(
    browser: Any, stack: Stack
) -> None:
    page, refusals = await _watched_page(browser, stack)
    await _sign_in(page, data.DEMO_PRESCRIBER_EMAIL)
    await expect(page).to_have_url(re.compile(r"/prescriber$"))
    await page.get_by_label("Find a patient to write for").fill("jamie testp")
    await page.get_by_role("button", name="Search").click()
    await expect(page).to_have_url(re.compile(r"/prescriber/search$"))
    await page.get_by_role("link", name="Write a prescription").first.click()

    medicine = page.locator("#medicine-0")
    quantity = page.locator("#quantity-0")
    directions = page.locator("#directions-0")
    await medicine.select_option(await _option(page, ORLISTAT))
    await expect(quantity).to_have_value("84 capsules")
    await expect(directions).to_have_value("Take one capsule three times a day with each main meal")
    # A typed quantity survives a change of medicine; an untouched default follows it.
    await quantity.fill("2 pens")
    await medicine.select_option(await _option(page, SEMAGLUTIDE))
    await expect(quantity).to_have_value("2 pens")
    await expect(directions).to_have_value("Inject 0.5mg once weekly under the skin")

    await page.get_by_role("button", name="Write prescription", exact=True).last.click()
    await expect(page.locator("#written-notice")).to_contain_text("Draft written.")
    await expect(page.locator("#items")).to_contain_text(SEMAGLUTIDE)
    await expect(page.locator("#items")).to_contain_text("2 pens")
    assert refusals == []


async def test_a_medicine_picked_before_the_script_ran_still_gets_its_defaults(
    browser: Any, stack: Stack
) -> None:
    """The script is deferred: on a slow link the prescriber can pick a medicine before it
    runs, and that "change" has no listener yet. The script fills the defaults it missed."""
    page, refusals = await _watched_page(browser, stack)
    await _sign_in(page, data.DEMO_PRESCRIBER_EMAIL)
    await page.get_by_label("Find a patient to write for").fill("jamie testp")
    await page.get_by_role("button", name="Search").click()
    write_link = page.get_by_role("link", name="Write a prescription").first
    write_url = await write_link.get_attribute("href")
    assert write_url

    script_requested = asyncio.Event()
    release_script = asyncio.Event()

    async def hold_script(route: Route) -> None:
        script_requested.set()
        await release_script.wait()
        await route.continue_()

    await page.route("**/static/prescriber.js", hold_script)
    await page.goto(write_url, wait_until="commit")
    await script_requested.wait()
    await page.locator("#medicine-0").select_option(await _option(page, ORLISTAT))
    assert await page.locator("#quantity-0").input_value() == ""
    release_script.set()

    await expect(page.locator("#quantity-0")).to_have_value("84 capsules")
    await expect(page.locator("#directions-0")).to_have_value(
        "Take one capsule three times a day with each main meal"
    )
    assert refusals == []
