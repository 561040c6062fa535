"""The admin's pharmacy pages in Chromium, on a desktop and on a 390x844 phone.

Checking a pharmacy asks the live sandbox from the page and the badge says what it found:
a registered contact is OK; an unknown one fails and the pharmacy is withheld from
patients, until the admin clears it. Importing a CSV shows a preview first; applying it
makes exactly that change.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from rxroute.models import Pharmacy
from rxroute.seed import data
from tests.browser.conftest import DESKTOP, PHONE, Shots, Stack

VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
NEW_ROW = (
    "code,name,address_line1,address_line2,town,postcode,region,email,platform_contact_id,active\r\n"
    "FA777,Canal Side Pharmacy,3 Canal Wharf,,Edinburgh,EH3 9QG,A,canal@example.com,,yes\r\n"
)


async def _admin_page(browser: Any, stack: Stack, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(base_url=stack.url, viewport=viewport)
    context.set_default_timeout(15_000)
    page: Page = await context.new_page()
    await page.goto("/login")
    await page.get_by_label("Email").fill(data.DEMO_ADMIN_EMAIL)
    await page.get_by_label("Password").fill(data.DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).not_to_have_url(re.compile(r"/login"))
    return page


async def _unknown_contact_pharmacy(stack: Stack) -> Pharmacy:
    async with stack.runtime.sessionmaker() as session, session.begin():
        pharmacy = Pharmacy(
            name="Ghost Contact Pharmacy",
            address_line1="1 Nowhere Lane",
            address_line2="",
            town="Leeds",
            postcode="LS6 2AA",
            region="B",
            platform_contact_id=999_999,
        )
        session.add(pharmacy)
    return pharmacy


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_check_a_pharmacy_then_import_with_a_preview(
    browser: Any, stack: Stack, shots: Shots, viewport: str
) -> None:
    ghost = await _unknown_contact_pharmacy(stack)
    page = await _admin_page(browser, stack, VIEWPORTS[viewport])

    # A registered pharmacy, from the filtered list: OK, and the filter is kept.
    async with stack.runtime.sessionmaker() as session:
        known = await session.scalar(
            select(Pharmacy)
            .where(Pharmacy.region == "B", Pharmacy.platform_contact_id.is_not(None))
            .order_by(Pharmacy.name)
            .limit(1)
        )
    assert known is not None
    await page.goto(f"/admin/pharmacies?region=B&q={known.postcode.replace(' ', '')}")
    row = page.locator("tr", has=page.get_by_role("link", name=known.name, exact=True))
    await row.get_by_role("button", name="Check").click()
    await expect(page.get_by_role("status").first).to_contain_text("Checked: everything")
    assert "region=B" in page.url and "q=" in page.url
    await expect(page.locator(f"#health-{known.id} .health-badge")).to_have_text("OK")
    await shots.take(page, "checked-ok", top="h1")

    # An unknown contact: a problem, withheld from patients, until cleared.
    await page.goto(f"/admin/pharmacies/{ghost.id}")
    await page.get_by_role("button", name="Check now").click()
    await expect(page.get_by_role("status").first).to_contain_text("now withheld")
    await expect(page.locator("#health .health-badge")).to_have_text("Problem")
    await expect(page.locator("#health .health-detail")).to_contain_text("999999")
    await expect(page.locator("[data-withheld=yes]")).to_be_visible()
    await shots.take(
        page,
        "withheld",
        top="#health",
        key="19-admin-pharmacy-withheld" if viewport == "desktop" else None,
    )
    await page.locator("#action-reason").fill("platform registered the branch")
    await page.get_by_role("button", name="Clear: offer it to patients again").click()
    await expect(page.get_by_role("status").first).to_contain_text("Cleared")
    await expect(page.locator("[data-withheld=yes]")).to_have_count(0)

    # Import: a preview first (nothing written), then exactly that change.
    await page.goto("/admin/pharmacies/import")
    await page.set_input_files(
        "#file", files=[{"name": "more.csv", "mimeType": "text/csv", "buffer": NEW_ROW.encode()}]
    )
    await page.get_by_role("button", name="Check and preview").click()
    await expect(page.locator("#preview-summary")).to_contain_text(
        "1 to add, 0 to update, 0 to deactivate"
    )
    await expect(page.locator("#additions")).to_contain_text("Canal Side Pharmacy")
    async with stack.runtime.sessionmaker() as session:
        assert await session.scalar(select(Pharmacy).where(Pharmacy.code == "FA777")) is None
    await shots.take(
        page,
        "import-preview",
        top="h1",
        key="20-admin-import-preview" if viewport == "desktop" else None,
    )
    apply_button = page.get_by_role("button", name="Apply these changes")
    await apply_button.scroll_into_view_if_needed()
    await expect(apply_button).to_be_in_viewport()
    await apply_button.click()
    await expect(page.locator("#import-result")).to_contain_text(
        "1 added, 0 updated, 0 deactivated"
    )
    async with stack.runtime.sessionmaker() as session:
        added = await session.scalar(select(Pharmacy).where(Pharmacy.code == "FA777"))
    assert added is not None and added.name == "Canal Side Pharmacy" and added.active
    await shots.take(page, "import-applied", top="h1")
    await page.context.close()
