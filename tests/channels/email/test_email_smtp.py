"""``send_email`` against real SMTP servers on 127.0.0.1: the catcher and refusing ones."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from rxroute.channels.email.document import PrescriptionDocument
from rxroute.channels.email.errors import EmailRejected, EmailRetryable
from rxroute.channels.email.message import build_prescription_email
from rxroute.channels.email.pdf import render_prescription_pdf
from rxroute.channels.email.smtp import send_email
from rxroute.mailcatcher import MailCatcher
from rxroute.mailcatcher.server import _PortReportingController

RECIPIENT = "riverside@example.com"


@pytest.fixture
def message(document: PrescriptionDocument) -> EmailMessage:
    return build_prescription_email(
        sender="prescriptions@rxroute.example.com",
        to=RECIPIENT,
        doc=document,
        pdf=render_prescription_pdf(document),
        confirm_url="http://127.0.0.1:8000/pharmacy/confirm/tok",
    )


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    with MailCatcher("127.0.0.1", 0, 0) as running:
        yield running


class _RefusingHandler:
    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        return self.reply


def _refusing_server(reply: str) -> Iterator[int]:
    controller = _PortReportingController(_RefusingHandler(reply), hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield int(controller.port)
    finally:
        controller.stop()


@pytest.fixture
def rejecting_port() -> Iterator[int]:
    yield from _refusing_server("550 5.1.1 <riverside@example.com>: Recipient address rejected")


@pytest.fixture
def greylisting_port() -> Iterator[int]:
    yield from _refusing_server("451 4.7.1 <riverside@example.com>: try again later")


async def test_delivers_to_the_catcher(catcher: MailCatcher, message: EmailMessage) -> None:
    await send_email(message, host="127.0.0.1", port=catcher.smtp_port, timeout=5)

    [stored] = catcher.messages()
    assert stored.subject == "Private prescription RX-2026-000123"
    assert stored.envelope_to == (RECIPIENT,)
    assert [a.filename for a in stored.attachments] == ["prescription-RX-2026-000123.pdf"]

    async with httpx.AsyncClient(base_url=catcher.web_url) as client:
        listing = (await client.get("/api/messages")).json()
        assert listing[0]["subject"] == "Private prescription RX-2026-000123"
        assert "http://127.0.0.1:8000/pharmacy/confirm/tok" in listing[0]["links"]
        pdf = await client.get(listing[0]["attachments"][0]["url"])
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert pdf.content == stored.attachments[0].data


async def test_connection_refused_is_retryable(message: EmailMessage) -> None:
    # A bound socket that never listens: connecting to it is refused, and nobody else can
    # take the port while the test runs.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with pytest.raises(EmailRetryable) as caught:
            await send_email(message, host="127.0.0.1", port=port, timeout=5)
    assert caught.value.stage == "connect"
    assert "refused the connection" in str(caught.value)


async def test_silent_server_times_out_as_retryable(message: EmailMessage) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts; no greeting ever comes
        with pytest.raises(EmailRetryable) as caught:
            await send_email(message, host="127.0.0.1", port=silent.getsockname()[1], timeout=0.5)
    assert "timed out" in str(caught.value)


async def test_recipient_refused_with_550_is_rejected(
    rejecting_port: int, message: EmailMessage
) -> None:
    with pytest.raises(EmailRejected) as caught:
        await send_email(message, host="127.0.0.1", port=rejecting_port, timeout=5)
    error = caught.value
    assert (error.stage, error.smtp_code, error.enhanced_status) == ("recipient", 550, "5.1.1")
    assert RECIPIENT not in str(error)
    assert error.__cause__ is None and error.__suppress_context__


async def test_recipient_deferred_with_451_is_retryable(
    greylisting_port: int, message: EmailMessage
) -> None:
    with pytest.raises(EmailRetryable) as caught:
        await send_email(message, host="127.0.0.1", port=greylisting_port, timeout=5)
    assert caught.value.smtp_code == 451
    assert RECIPIENT not in str(caught.value)


async def test_login_against_a_server_without_auth_is_rejected(
    catcher: MailCatcher, message: EmailMessage
) -> None:
    with pytest.raises(EmailRejected) as caught:
        await send_email(
            message,
            host="127.0.0.1",
            port=catcher.smtp_port,
            username="user",
            password="pw",
            timeout=5,
        )
    assert caught.value.stage == "auth"
    assert catcher.messages() == []


async def test_starttls_against_a_server_without_it_is_rejected(
    catcher: MailCatcher, message: EmailMessage
) -> None:
    with pytest.raises(EmailRejected) as caught:
        await send_email(
            message, host="127.0.0.1", port=catcher.smtp_port, starttls=True, timeout=5
        )
    assert caught.value.stage == "tls"
