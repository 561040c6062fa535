"""A live page whose session ends says so, instead of silently stopping its updates."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect
from sqlalchemy import select

from rxroute.auth.accounts import sign_out_everywhere
from rxroute.models import User
from rxroute.seed import data
from tests.browser.conftest import Shots, Stack
from tests.browser.test_journey import (
    LIVE_TIMEOUT,
    _mark,
    _patient_page,
    _send,
    _sign_in,
    _still_marked,
)


async def test_the_live_timeline_says_the_patient_was_signed_out(
    browser: Any, stack: Stack, shots: Shots
) -> None:
    page = await _patient_page(browser, stack)
    await _sign_in(page)
    prescription_id = await stack.draft("A")
    await _send(page, stack, prescription_id, "A", "edinburgh", shots)
    await _mark(page)
    await expect(page.locator("#status")).to_have_text("Emailed to pharmacy", timeout=LIVE_TIMEOUT)

    async with stack.runtime.sessionmaker() as session, session.begin():
        user = await session.scalar(select(User).where(User.email == data.DEMO_PATIENT_EMAIL))
        assert user is not None
        assert await sign_out_everywhere(session, user) == 1

    notice = page.locator("#signed-out")
    await expect(notice).to_have_text(
        "You were signed out \u2014 sign in again to see new updates.", timeout=LIVE_TIMEOUT
    )
    await _still_marked(page)
    await shots.take(page, "signed-out", top="#status-panel")
    await notice.get_by_role("link", name="sign in again").click()
    await expect(page).to_have_url(
        re.compile(rf"/login\?next=%2Fprescriptions%2F{prescription_id}")
    )
    await expect(page.locator("#login-notice")).to_contain_text("You were signed out")
