"""``/docs`` needs nothing but rxroute: no CDN, no inline script; ``/redoc`` leads there."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx

CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


class _Page(HTMLParser):
    """The URLs a page loads (scripts, styles, icons) and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.inline_scripts: list[str] = []
        self.config: str | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self._in_script = True
            if found.get("src"):
                self.assets.append(str(found["src"]))
            else:
                self.inline_scripts.append("")
        elif tag == "link" and found.get("href"):
            self.assets.append(str(found["href"]))
        elif tag == "img" and found.get("src"):
            self.assets.append(str(found["src"]))
        if found.get("data-config"):
            self.config = found["data-config"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def _same_origin(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and url.startswith("/")


async def _check_assets(client: httpx.AsyncClient, page: _Page) -> None:
    assert page.assets, "the page loads nothing"
    assert [url for url in page.assets if not _same_origin(url)] == []
    for url in page.assets:
        response = await client.get(url)
        assert response.status_code == 200, url
        suffix = url[url.rfind(".") :]
        content_type = response.headers["content-type"].split(";")[0]
        assert content_type in CONTENT_TYPES[suffix], (url, content_type)
        assert len(response.content) > 0


async def test_docs_page_loads_only_same_origin_assets(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = _Page()
    page.feed(response.text)
    assert "cdn" not in response.text.lower()
    assert "googleapis" not in response.text
    await _check_assets(client, page)
    assert page.inline_scripts == [], "inline script would need a CSP exception"


async def test_swagger_ui_reads_the_served_openapi_document(client: httpx.AsyncClient) -> None:
    page = _Page()
    page.feed((await client.get("/docs")).text)
    assert page.config is not None
    config = json.loads(page.config)
    assert config["dom_id"] == "#swagger-ui"
    # Swagger UI's default would show a badge image fetched from validator.swagger.io,
    # sending it the document's URL.
    assert config["validatorUrl"] is None
    assert _same_origin(config["url"])
    document = await client.get(config["url"])
    assert document.status_code == 200
    assert document.json()["info"]["title"] == "rxroute"
    scripts = [url for url in page.assets if url.endswith(".js")]
    init = await client.get(scripts[-1])
    assert "SwaggerUIBundle(config)" in init.text


async def test_redoc_leads_to_the_offline_docs(client: httpx.AsyncClient) -> None:
    """ReDoc needs inline styles and Redocly's CDN for its logo; Swagger UI shows it all."""
    response = await client.get("/redoc")
    assert response.status_code == 308
    assert response.headers["location"] == "/docs"


async def test_missing_docs_asset_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs-assets/nothing.js", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
