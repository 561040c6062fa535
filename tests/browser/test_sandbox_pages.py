"""The sandbox's own pages in Chromium, on a desktop and on a 390x844 phone: the list of
prescriptions (reached from the home page) and the faults form, and no page wider than the
screen (the webhook deliveries table once overflowed it).

The page tests run the sandbox alone (it imports nothing of rxroute) and issue through its
API as rxroute would; the README's failure recipe runs the whole stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from rxroute.sandbox import SandboxServer
from rxroute.seed import data
from rxroute.web.failure_text import FAILURE_HEADLINE
from tests.browser.conftest import DESKTOP, PHONE, Shots, Stack
from tests.browser.test_journey import LIVE_TIMEOUT, _patient_page, _send, _sign_in
from tests.sandbox.conftest import fast_config, free_port, issue, login

SIZES = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    config = fast_config().with_overrides(
        # Nobody listens there: every delivery try fails fast and is logged with its error.
        webhook_url=f"http://127.0.0.1:{free_port()}/webhooks/erx"
    )
    timings = config.timings.model_copy(update={"webhook_max_attempts": 2})
    async with SandboxServer(config.model_copy(update={"timings": timings})) as server:
        yield server


async def _page(browser: Any, sandbox: SandboxServer, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(viewport=viewport, base_url=sandbox.url)
    page: Page = await context.new_page()
    return page


async def _fits_the_screen(page: Page) -> None:
    wider = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert wider <= 0, f"{page.url} is {wider}px wider than the screen"


@SIZES
async def test_prescriptions_list_from_the_home_page(
    browser: Any, sandbox: SandboxServer, viewport: dict[str, int], shots: Shots
) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url, trust_env=False) as api:
        headers = await login(api)
        issued = (await issue(api, headers, client_ref_id="rx-browser-1"))["data"]
        prescription_id = issued["prescription"]["id"]
        await api.post("/_sandbox/wait-idle", json={"timeout": 10})
    page = await _page(browser, sandbox, viewport)
    await page.goto("/")
    await page.get_by_role("main").get_by_role("link", name="Prescriptions", exact=True).click()
    await expect(page).to_have_url(f"{sandbox.url}/prescriptions")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Prescriptions")
    row = page.locator(f"#rx-{prescription_id}")
    await expect(row).to_contain_text("rx-browser-1")
    await expect(row.locator(".rx-status")).to_have_text("signed")
    await _fits_the_screen(page)
    await shots.take(page, "sandbox-prescriptions")
    # Signed: its ID opens the pharmacy portal.
    await row.get_by_role("link", name=prescription_id).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Prescription {prescription_id}"
    )

    await page.goto("/deliveries")
    await expect(page.locator("tbody tr").first).to_be_visible()
    assert "built-in method" not in await page.content()
    await _fits_the_screen(page)
    await shots.take(page, "sandbox-deliveries")


@SIZES
async def test_faults_page_sets_faults_and_names_bad_values(
    browser: Any, sandbox: SandboxServer, viewport: dict[str, int], shots: Shots
) -> None:
    page = await _page(browser, sandbox, viewport)
    await page.goto("/")
    await page.get_by_role("main").get_by_role("link", name="Faults", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Faults")
    await _fits_the_screen(page)

    await page.get_by_label("Error rate (0 to 1)").fill("2")
    await page.get_by_role("button", name="Save fault settings").click()
    summary = page.get_by_role("alert")
    await expect(summary).to_contain_text("error_rate")
    await expect(page.get_by_label("Error rate (0 to 1)")).to_have_attribute("aria-invalid", "true")
    await shots.take(page, "sandbox-faults-error")

    await page.get_by_label("Error rate (0 to 1)").fill("0.2")
    await page.get_by_role("button", name="Save fault settings").click()
    await expect(page.get_by_role("status")).to_have_text("Fault settings saved.")
    await expect(page.get_by_label("Error rate (0 to 1)")).to_have_value("0.2")

    # The README's recipe: the next issue is refused by the platform.
    await page.get_by_label("Operation").select_option("issue")
    await page.get_by_label("Fault", exact=True).select_option("reject")
    await page.get_by_role("button", name="Arm").click()
    await expect(page.locator("#armed")).to_contain_text("issue: reject (1 of 1 left)")
    await _fits_the_screen(page)
    await shots.take(page, "sandbox-faults-armed")

    async with httpx.AsyncClient(base_url=sandbox.url, trust_env=False) as api:
        faults = (await api.get("/_sandbox/faults")).json()
        armed = (await api.get("/_sandbox/faults/next")).json()["armed"]
    assert faults["error_rate"] == 0.2
    assert [(a["operation"], a["fault"]) for a in armed] == [("issue", "reject")]

    await page.get_by_role("button", name="Clear aimed faults").click()
    await expect(page.locator("#armed")).to_have_text("None armed.")


async def test_readme_failure_recipe(browser: Any, stack: Stack, shots: Shots) -> None:
    """The README's "make a send fail": arm "issue: reject" on the sandbox's faults page, then
    send a Region B prescription to a seeded pharmacy. It fails at once (no retries: the
    platform said no): the patient is asked to choose another pharmacy, in plain words, and
    the platform's own words are kept for support. The README's picture of a failed send is
    this one."""
    sandbox_page = await _page(browser, stack.sandbox, DESKTOP)
    await sandbox_page.goto("/faults")
    await sandbox_page.get_by_label("Operation").select_option("issue")
    await sandbox_page.get_by_label("Fault", exact=True).select_option("reject")
    await sandbox_page.get_by_role("button", name="Arm").click()
    await expect(sandbox_page.locator("#armed")).to_contain_text("issue: reject (1 of 1 left)")
    await shots.take(sandbox_page, "sandbox-faults", key="14-sandbox-faults", top="#aimed-heading")

    page = await _patient_page(browser, stack)
    await _sign_in(page)
    prescription_id = await stack.draft("B")
    name = await _send(page, stack, prescription_id, "B", "leeds", shots)
    assert name in {p.name for p in data.pharmacies("B")}, "the recipe uses a seeded pharmacy"
    await expect(page.locator("#status")).to_have_text("Not sent", timeout=LIVE_TIMEOUT)
    await expect(page.locator("#failure")).to_contain_text(FAILURE_HEADLINE)
    await expect(page.locator("#failure")).to_contain_text("choose another pharmacy")
    await expect(page.locator("#failure")).not_to_contain_text("sandbox")
    await shots.take(page, "failed", key="09-failed-send", top="#status-panel")
    # Used up: the sandbox's faults page shows nothing armed any more.
    await sandbox_page.goto("/faults")
    await expect(sandbox_page.locator("#armed")).to_have_text("None armed.")
