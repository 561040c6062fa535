"""In a real browser, the Content-Security-Policy refuses nothing on rxroute's own pages.

A refused script or style is silent for the user (the type-ahead just stops working), so
each page is opened with the browser's console watched for CSP refusals while the
page's scripts run: the patient's send page through a whole type-ahead search and choice,
the support console, and each admin page. Framing any page is refused.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import ConsoleMessage, Page, expect

from rxroute.seed import data
from tests.browser.conftest import Stack

CSP_REFUSAL = re.compile(r"Content Security Policy|Refused to (?:execute|load|apply|frame)", re.I)


async def _watched_page(browser: Any, stack: Stack) -> tuple[Page, list[str]]:
    context = await browser.new_context(base_url=stack.url)
    context.set_default_timeout(15_000)
    page: Page = await context.new_page()
    refusals: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if CSP_REFUSAL.search(message.text):
            refusals.append(message.text)

    page.on("console", on_console)
    return page, refusals


async def _sign_in(page: Page, email: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(data.DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).not_to_have_url(re.compile(r"/login"))


async def test_the_patients_scripts_run_under_the_policy(browser: Any, stack: Stack) -> None:
    page, refusals = await _watched_page(browser, stack)
    await _sign_in(page, data.DEMO_PATIENT_EMAIL)
    await page.goto(f"/prescriptions/{await stack.draft('B')}")
    await page.locator("#region-B").check()
    search = page.get_by_role("combobox", name="Find your pharmacy")
    await search.press_sequentially("leeds", delay=30)
    # The type-ahead (static JS, fetch to the API) answered: scripts and connect-src work.
    await expect(page.locator("#pharmacy-results")).to_have_attribute("data-query", "leeds")
    option = page.get_by_role("option").first
    await option.click()
    await expect(page.locator("#chosen-name")).not_to_be_empty()
    assert refusals == []


async def test_staff_pages_load_without_refusals(browser: Any, stack: Stack) -> None:
    page, refusals = await _watched_page(browser, stack)
    await _sign_in(page, data.DEMO_ADMIN_EMAIL)
    for path in (
        "/support",
        "/admin",
        "/admin/pharmacies",
        "/admin/prescribers",
        "/admin/audit",
        "/admin/formulary",
    ):
        response = await page.goto(path)
        assert response is not None and response.status == 200, path
    # The support search posts its form (form-action 'self') and renders the results.
    await page.goto("/support")
    await page.get_by_label("ID or email").fill(data.DEMO_PATIENT_EMAIL)
    await page.get_by_role("button", name="Search").click()
    await expect(page).to_have_url(re.compile(r"/support/search$"))
    await expect(page.locator("#results-heading")).to_be_visible()
    assert refusals == []


async def test_no_page_can_be_framed(browser: Any, stack: Stack) -> None:
    page, refusals = await _watched_page(browser, stack)
    await page.set_content(f'<iframe id="framed" src="{stack.url}/login"></iframe>')
    frame = page.frame_locator("#framed")
    await expect(page.locator("#framed")).to_be_attached()
    await page.wait_for_timeout(500)
    assert await frame.locator("form").count() == 0
    assert any("frame" in refusal.lower() for refusal in refusals), refusals


async def test_the_docs_pages_are_not_refused_by_their_policy(browser: Any, stack: Stack) -> None:
    """/docs (and /redoc, which leads to it) load under the strict policy: nothing refused."""
    page, refusals = await _watched_page(browser, stack)
    for path in ("/docs", "/redoc"):
        response = await page.goto(path)
        assert response is not None and response.status == 200, path
        await page.wait_for_timeout(300)
    assert refusals == []
