"""Helpers for the pharmacy import's two steps: upload for a preview, then apply it."""

from __future__ import annotations

import html
import re

import httpx

from tests.staff_pages import csrf_for, csrf_from

_HIDDEN = re.compile(
    r'<input type="hidden" name="(content|token|filename|whole_list)" value="([^"]*)">'
)


async def preview(
    client: httpx.AsyncClient,
    content: bytes,
    filename: str = "pharmacies.csv",
    *,
    whole_list: bool = False,
) -> httpx.Response:
    """Upload a file: the preview page (or the rejection), nothing written."""
    token = await csrf_for(client, "/admin/pharmacies/import")
    data = {"csrf_token": token}
    if whole_list:
        data["whole_list"] = "yes"
    return await client.post(
        "/admin/pharmacies/import", data=data, files={"file": (filename, content, "text/csv")}
    )


def apply_form(page: str) -> dict[str, str]:
    """The preview's "Apply" form, as the browser would post it."""
    fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}
    assert "content" in fields and "token" in fields, "no apply form on the page"
    return {"csrf_token": csrf_from(page), **fields}


async def apply(client: httpx.AsyncClient, page: str) -> httpx.Response:
    return await client.post("/admin/pharmacies/import/apply", data=apply_form(page))


async def import_csv(
    client: httpx.AsyncClient,
    content: bytes,
    filename: str = "pharmacies.csv",
    *,
    whole_list: bool = False,
) -> httpx.Response:
    """Preview, then apply what was previewed; a rejected file returns the preview's answer."""
    shown = await preview(client, content, filename, whole_list=whole_list)
    if shown.status_code != 200 or 'id="apply-import"' not in shown.text:
        return shown
    return await apply(client, shown.text)
