"""``/docs`` renders in a real browser that can reach nothing but rxroute.

Every request to another origin is aborted and recorded, and the page is served with a
Content-Security-Policy forbidding inline script and inline style, as a locked-down
deployment would.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, Shots, Stack

STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"


async def _offline_page(browser: Any, stack: Stack) -> tuple[Any, Any, list[str], list[str]]:
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    elsewhere: list[str] = []
    errors: list[str] = []

    async def only_rxroute(route: Any) -> None:
        url = route.request.url
        if not url.startswith(stack.url):
            elsewhere.append(url)
            await route.abort()
            return
        response = await route.fetch()
        headers = {**response.headers, "content-security-policy": STRICT_CSP}
        await route.fulfill(response=response, headers=headers)

    await page.route("**/*", only_rxroute)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    return context, page, elsewhere, errors


@pytest.mark.slow
async def test_swagger_ui_renders_offline_under_a_strict_csp(
    browser: Any, stack: Stack, shots: Shots
) -> None:
    context, page, elsewhere, errors = await _offline_page(browser, stack)
    try:
        await page.goto(f"{stack.url}/docs")
        send = page.locator(
            '.opblock-summary-path[data-path="/api/v1/prescriptions/{prescription_id}/send"]'
        )
        await send.wait_for(timeout=15_000)
        await page.get_by_text("ErrorBody", exact=True).first.wait_for(timeout=5_000)
        await shots.take(page, "swagger-ui")
    finally:
        await context.close()
    assert elsewhere == []
    assert errors == []
