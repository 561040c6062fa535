"""The patient's pages in Chromium, on a desktop and on a 390x844 phone.

Each journey runs at both sizes: regions named and explained (each explanation tied to its
radio by ``aria-describedby``), the confirm step (``#confirm-send``) with its button in reach,
the live page during a platform outage (retrying, then "the service is down, try again" and
never the platform's words or a success box beside it), search that says how many it shows
and shows more, focus on the error summary after a server-side refusal, the focus ring
inside the scrolling results, the last pharmacy offered again, and the no-JS wording.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from rxroute.prescriptions.reference import short_reference
from rxroute.regions import DEFAULT_REGION_DISPLAY
from rxroute.web.failure_text import DOWN, RETRYING
from tests.browser.conftest import DESKTOP, PHONE, Shots, Stack
from tests.browser.test_journey import LIVE_TIMEOUT, _mark, _sign_in, _still_marked

SIZES = {"desktop": DESKTOP, "phone": PHONE}
LOCAL_TIME = re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2} (GMT|BST)$")


@pytest.fixture(params=sorted(SIZES))
def size(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def _page(browser: Any, stack: Stack, size: str, *, javascript: bool = True) -> Page:
    context = await browser.new_context(
        viewport=SIZES[size], base_url=stack.url, java_script_enabled=javascript
    )
    context.set_default_timeout(15_000)
    page: Page = await context.new_page()
    return page


async def _choose(page: Page, region: str, query: str) -> str:
    """Pick the region and the first matching pharmacy (not Boots); its name."""
    await page.locator(f"#region-{region}").check()
    search = page.get_by_role("combobox")
    await search.fill("")
    await search.press_sequentially(query, delay=30)
    results = page.locator("#pharmacy-results")
    await expect(results).to_have_attribute("data-query", query)
    await expect(results).to_have_attribute("aria-busy", "false")
    option = page.get_by_role("option").filter(has_not_text="Boots").first
    name = (await option.locator("strong").inner_text()).strip()
    await option.click()
    await expect(page.locator("#chosen-name")).to_have_text(name)
    return name


async def test_regions_explained_and_the_confirm_step(
    browser: Any, stack: Stack, shots: Shots, size: str
) -> None:
    page = await _page(browser, stack, size)
    await _sign_in(page)
    prescription_id = await stack.draft("A")
    await page.goto(f"/prescriptions/{prescription_id}")
    # Each region: its name as the label, its explanation tied to it.
    for code, shown in DEFAULT_REGION_DISPLAY.items():
        radio = page.get_by_role("radio", name=shown.name)
        await expect(radio).to_have_attribute("value", code)
        await expect(radio).to_have_accessible_description(shown.explanation)
    await expect(page.get_by_text("Region A", exact=True)).to_have_count(0)
    await expect(page.locator("#rx-ref")).to_have_text(short_reference(prescription_id))

    name = await _choose(page, "A", "edinburgh")
    # On a phone too, the button is on screen once a pharmacy is chosen.
    await expect(page.locator("#send-button")).to_be_in_viewport()
    await shots.take(page, "chosen")
    await page.locator("#send-button").click()

    await expect(page).to_have_url(re.compile(rf"/prescriptions/{prescription_id}/send/confirm\?"))
    await expect(page.locator("#confirm-pharmacy-name")).to_have_text(name)
    await expect(page.locator("#confirm-pharmacy-address")).to_contain_text("EH")
    await expect(page.locator("#next-steps")).to_contain_text(
        f"We email the prescription to {name}"
    )
    confirm = page.locator("#confirm-send")
    await expect(confirm).to_be_in_viewport()
    await shots.take(page, "confirm-step", key="17-send-confirm-step" if size == "phone" else None)
    await confirm.click()

    await expect(page.locator("#confirmation")).to_contain_text(f"Sent for processing to {name}")
    await _mark(page)
    await expect(page.locator("#status")).to_have_text("Emailed to pharmacy", timeout=LIVE_TIMEOUT)
    timeline = page.locator("#timeline li")
    await expect(timeline.first).to_contain_text("Written by your prescriber")
    await expect(page.locator("#timeline")).to_contain_text(f"Emailed to the pharmacy · {name}")
    for when in await page.locator("#timeline time").all_inner_texts():
        assert LOCAL_TIME.match(when), when
    await _still_marked(page)

    # The pharmacy's email quotes the same reference as the patient's page.
    reference = short_reference(prescription_id)
    subjects = [m.subject for m in stack.mail.messages()]
    assert f"Private prescription {reference}" in subjects, subjects

    # Next time, the pharmacy used last time is offered first.
    another = await stack.draft("A")
    await page.goto(f"/prescriptions/{another}")
    await expect(page.locator("#chosen-title")).to_have_text("Your pharmacy last time")
    await expect(page.locator("#chosen-name")).to_have_text(name)
    await expect(page.locator("#region-A")).to_be_checked()


async def test_a_platform_outage_is_explained(
    browser: Any, stack: Stack, shots: Shots, size: str
) -> None:
    # Every platform call fails with a 5xx; rxroute gives up after three tries, quickly.
    async with httpx.AsyncClient(base_url=stack.sandbox.url, timeout=10) as http:
        assert (await http.put("/_sandbox/faults", json={"error_rate": 1.0})).status_code == 200
    stack.runtime.settings = stack.runtime.settings.model_copy(
        update={"erx_send_max_attempts": 3, "erx_send_backoff_seconds": 2.0}
    )
    page = await _page(browser, stack, size)
    await _sign_in(page)
    prescription_id = await stack.draft("B")
    await page.goto(f"/prescriptions/{prescription_id}")
    name = await _choose(page, "B", "leeds")
    await page.locator("#send-button").click()
    await page.locator("#confirm-send").click()
    await _mark(page)

    # While it retries, the patient is told so (not just "Sending").
    await expect(page.locator("#retrying")).to_have_text(RETRYING, timeout=LIVE_TIMEOUT)
    await shots.take(page, "retrying", top="#status-panel")
    failure = page.locator("#failure")
    await expect(failure).to_be_visible(timeout=LIVE_TIMEOUT)
    await expect(failure).to_contain_text(DOWN.cause)
    await expect(failure).to_have_attribute("data-cause", "down")
    # Another pharmacy would not help: the box offers to try again, with the same one chosen.
    await expect(page.locator("#failure-action")).to_have_text("Try again")
    await expect(page.locator("#confirmation")).to_have_count(0)
    body = page.locator("body")
    await expect(body).not_to_contain_text("HTTP 5")
    await expect(body).not_to_contain_text("not sent after")
    await expect(body).not_to_contain_text("Sent for processing")
    await _still_marked(page)
    await shots.take(
        page, "outage", top="#status-panel", key="18-platform-outage" if size == "phone" else None
    )
    # "Try again" leads straight to the confirm step for the same pharmacy.
    await page.locator("#failure-action").click()
    await expect(page.locator("#confirm-pharmacy-name")).to_have_text(name)
    await expect(page.locator("#confirm-send")).to_be_in_viewport()


async def test_search_counts_shows_more_and_keeps_focus_visible(
    browser: Any, stack: Stack, size: str
) -> None:
    page = await _page(browser, stack, size)
    await _sign_in(page)
    prescription_id = await stack.draft("B")
    await page.goto(f"/prescriptions/{prescription_id}")
    await page.locator("#region-B").check()
    count = page.locator("#results-count")
    await expect(count).to_contain_text("Showing the first 20 matches")
    options = page.get_by_role("option")
    await expect(options).to_have_count(20)
    await count.get_by_role("button", name="show more").click()
    await expect(options).not_to_have_count(20)
    assert await options.count() > 20

    # Keyboard focus in the scrolling list: the ring is drawn inside the option.
    await page.get_by_role("combobox").press("ArrowDown")
    first = options.first
    await expect(first).to_be_focused()
    offset = await first.evaluate("el => getComputedStyle(el).outlineOffset")
    assert offset.startswith("-"), offset


async def test_a_server_refusal_moves_focus_to_the_error_summary(
    browser: Any, stack: Stack, size: str
) -> None:
    page = await _page(browser, stack, size)
    await _sign_in(page)
    prescription_id = await stack.draft("B")
    await page.goto(f"/prescriptions/{prescription_id}")
    await page.locator("#region-B").check()
    # "Continue" with no pharmacy chosen: the server refuses and names the field.
    await page.evaluate("document.getElementById('pharmacy-id').value = ''")
    await page.locator("#send-button").click()
    summary = page.locator("#error-summary")
    await expect(summary).to_contain_text("Choose a pharmacy from the list.")
    await expect(summary).to_be_focused()
    await summary.get_by_role("link").click()
    await expect(page.get_by_role("combobox")).to_be_focused()


async def test_without_javascript_it_sends_and_says_to_reload(
    browser: Any, stack: Stack, shots: Shots, size: str
) -> None:
    page = await _page(browser, stack, size, javascript=False)
    await _sign_in(page)
    prescription_id = await stack.draft("B")
    await page.goto(f"/prescriptions/{prescription_id}")
    await page.locator("#region-B").check()
    await page.get_by_label("Find your pharmacy").fill("")
    await page.get_by_role("button", name="Search").click()
    # The whole region without a query: how many of how many, and a way to see more.
    await expect(page.locator("#results-count")).to_contain_text(re.compile(r"Showing 20 of \d+"))
    await page.get_by_role("button", name="Show more pharmacies").click()
    await expect(page.get_by_role("option")).not_to_have_count(20)
    option = page.get_by_role("option").filter(has_not_text="Boots").first
    name = (await option.locator("strong").inner_text()).strip()
    await option.click()
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#confirm-pharmacy-name")).to_have_text(name)
    await page.locator("#confirm-send").click()
    await expect(page.locator("#confirmation")).to_contain_text(f"Sent for processing to {name}")
    await expect(page.get_by_text("This page updates by itself")).to_be_hidden()
    await expect(page.locator("#reload-hint")).to_be_visible()
    await shots.take(page, "no-js-sent", top="#status-panel")
