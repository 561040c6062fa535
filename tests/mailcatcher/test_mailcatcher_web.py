"""The catcher's SMTP side and web view, with messages sent by the stdlib SMTP client."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest
from fpdf import FPDF

from rxroute.mailcatcher import MailCatcher, MessageStore


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    with MailCatcher("127.0.0.1", 0, 0) as running:
        yield running


def _pdf() -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="attachment")
    return bytes(pdf.output())


def _send(catcher: MailCatcher, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=5) as client:
        client.send_message(message)


def _message(subject: str, text: str, html: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "rxroute <prescriptions@example.com>"
    message["To"] = "pharmacy@example.com"
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def test_ports_zero_resolve_to_real_ports(catcher: MailCatcher) -> None:
    assert catcher.smtp_port > 0
    assert catcher.web_port > 0
    assert catcher.web_url == f"http://127.0.0.1:{catcher.web_port}"


def test_lists_shows_and_serves_attachments(catcher: MailCatcher) -> None:
    message = _message(
        "Private prescription RX-1",
        "Confirm here: http://127.0.0.1:8000/pharmacy/confirm/abc.\n",
        '<p><a href="http://127.0.0.1:8000/pharmacy/confirm/abc">Confirm</a></p>',
    )
    pdf = _pdf()
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename="rx-1.pdf")
    _send(catcher, message)

    with httpx.Client(base_url=catcher.web_url) as client:
        [item] = client.get("/api/messages").json()
        assert item["subject"] == "Private prescription RX-1"
        assert item["to"] == "pharmacy@example.com"
        assert item["envelope_to"] == ["pharmacy@example.com"]
        assert "Confirm here" in item["text"]
        assert "<a href" in item["html"]
        assert item["links"] == ["http://127.0.0.1:8000/pharmacy/confirm/abc"]
        assert [a["filename"] for a in item["attachments"]] == ["rx-1.pdf"]

        index = client.get("/")
        assert index.status_code == 200
        assert "Private prescription RX-1" in index.text
        assert f'href="/messages/{item["id"]}"' in index.text

        page = client.get(f"/messages/{item['id']}")
        assert page.status_code == 200
        assert 'href="http://127.0.0.1:8000/pharmacy/confirm/abc"' in page.text
        assert f'href="/messages/{item["id"]}/attachments/0"' in page.text
        assert "sandbox=" in page.text
        assert "script-src" not in page.headers["content-security-policy"]
        assert page.headers["content-security-policy"].startswith("default-src 'none'")

        download = client.get(item["attachments"][0]["url"])
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/pdf"
        assert download.content == pdf

        assert client.get(f"/messages/{item['id']}/attachments/5").status_code == 404
        assert client.get("/messages/999").status_code == 404
        raw = client.get(f"/messages/{item['id']}/raw")
        assert b"Subject: Private prescription RX-1" in raw.content

    assert len(catcher.messages()) == 1


def test_untrusted_content_is_escaped(catcher: MailCatcher) -> None:
    subject = '<img src=x onerror="alert(1)"> <script>alert(2)</script>'
    text = (
        "</pre><script>alert(3)</script> see javascript:alert(4) and http://ok.example/a?b=1&c=<x>"
    )
    html = '<script>alert(5)</script><a href="javascript:alert(6)">x</a><iframe src="http://e"></iframe>'
    message = _message(subject, text, html)
    message.add_attachment(
        b"<script>alert(7)</script>", maintype="text", subtype="html", filename='evil".html'
    )
    _send(catcher, message)

    with httpx.Client(base_url=catcher.web_url) as client:
        [item] = client.get("/api/messages").json()
        index = client.get("/").text
        page = client.get(f"/messages/{item['id']}").text
        attachment = client.get(f"/messages/{item['id']}/attachments/0")

    for rendered in (index, page):
        assert "<script>" not in rendered
        assert "<img" not in rendered
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in rendered
    # The HTML body only ever appears escaped inside the sandboxed iframe's srcdoc.
    assert "&lt;script&gt;alert(5)&lt;/script&gt;" in page
    assert page.count("<iframe") == 1
    assert 'href="javascript:' not in page
    # Only the http(s) URL became a link, and its query string stayed escaped.
    assert 'href="http://ok.example/a?b=1&amp;c="' in page
    assert "&lt;x&gt;" in page
    # A non-PDF attachment never renders on this origin.
    assert attachment.headers["content-type"] == "application/octet-stream"
    assert attachment.headers["content-disposition"].startswith("attachment;")
    # The quote in the sender's filename cannot break out of the header parameter.
    assert 'filename="evil_.html";' in attachment.headers["content-disposition"]


def test_store_is_bounded_and_ids_are_not_reused() -> None:
    store = MessageStore(capacity=3)
    for n in range(5):
        raw = _message(f"message {n}", "body").as_bytes()
        store.add(raw, envelope_from="a@example.com", envelope_to=("b@example.com",))
    kept = store.all()
    assert [m.subject for m in kept] == ["message 2", "message 3", "message 4"]
    assert [m.id for m in kept] == [3, 4, 5]
    assert store.get(1) is None


def test_clear_via_api(catcher: MailCatcher) -> None:
    _send(catcher, _message("one", "body"))
    with httpx.Client(base_url=catcher.web_url) as client:
        assert client.delete("/api/messages").status_code == 204
        assert client.get("/api/messages").json() == []


def test_stop_is_idempotent_and_frees_the_ports() -> None:
    catcher = MailCatcher("127.0.0.1", 0, 0)
    catcher.start()
    smtp_port, web_port = catcher.smtp_port, catcher.web_port
    catcher.stop()
    catcher.stop()
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", smtp_port, timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{web_port}/", timeout=2)
