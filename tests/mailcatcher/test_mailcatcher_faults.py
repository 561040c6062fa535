"""Staged failures: the catcher refuses or loses the next N messages, armed over its JSON API.

Sent through rxroute's own SMTP client, so the test proves what Region A's sender will see
(``EmailRejected`` for 5xx, ``EmailRetryable`` for 4xx), and through smtplib for the raw reply.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from rxroute.channels.email.errors import EmailRejected, EmailRetryable
from rxroute.channels.email.smtp import send_email
from rxroute.mailcatcher import MailCatcher


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    with MailCatcher("127.0.0.1", 0, 0) as running:
        yield running


@pytest.fixture
def web(catcher: MailCatcher) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=catcher.web_url, trust_env=False) as client:
        yield client


def _message(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "rxroute <prescriptions@example.com>"
    message["To"] = "pharmacy@example.com"
    message["Subject"] = subject
    message.set_content("Prescription attached.")
    return message


async def _send(catcher: MailCatcher, subject: str) -> None:
    await send_email(_message(subject), host="127.0.0.1", port=catcher.smtp_port, timeout=5)


def _arm(web: httpx.Client, **body: Any) -> dict[str, Any]:
    response = web.post("/api/faults", json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _subjects(web: httpx.Client) -> list[str]:
    return [m["subject"] for m in web.get("/api/messages").json()]


async def test_refuse_permanent_is_email_rejected(catcher: MailCatcher, web: httpx.Client) -> None:
    armed = _arm(web, mode="refuse_permanent")
    assert armed["fault"] == {
        "id": 1,
        "mode": "refuse_permanent",
        "count": 1,
        "remaining": 1,
        "reply": "550 5.2.1 Mailbox unavailable (staged by the mail catcher)",
    }
    with pytest.raises(EmailRejected) as refused:
        await _send(catcher, "refused")
    assert (refused.value.smtp_code, refused.value.enhanced_status) == (550, "5.2.1")
    assert refused.value.stage == "data"
    await _send(catcher, "accepted")
    assert _subjects(web) == ["accepted"]
    assert web.get("/api/faults").json() == {"armed": [], "fired": {"refuse_permanent": 1}}


async def test_refuse_temporary_twice_is_email_retryable(
    catcher: MailCatcher, web: httpx.Client
) -> None:
    _arm(web, mode="refuse_temporary", count=2)
    for attempt in range(2):
        with pytest.raises(EmailRetryable) as deferred:
            await _send(catcher, f"try {attempt}")
        assert (deferred.value.smtp_code, deferred.value.enhanced_status) == (451, "4.3.0")
    await _send(catcher, "third try")
    assert _subjects(web) == ["third try"]
    assert web.get("/api/faults").json()["fired"] == {"refuse_temporary": 2}


async def test_drop_says_250_but_keeps_nothing(catcher: MailCatcher, web: httpx.Client) -> None:
    _arm(web, mode="drop", count=2)
    await _send(catcher, "lost 1")  # no exception: the sender believes it was delivered
    with smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=5) as client:
        assert client.send_message(_message("lost 2")) == {}
    await _send(catcher, "kept")
    assert _subjects(web) == ["kept"]
    assert [m.subject for m in catcher.messages()] == ["kept"]
    assert web.get("/api/faults").json()["fired"] == {"drop": 2}


def test_modes_fire_in_the_order_armed_and_the_page_shows_them(
    catcher: MailCatcher, web: httpx.Client
) -> None:
    _arm(web, mode="refuse_temporary")
    _arm(web, mode="drop")
    listed = _arm(web, mode="refuse_permanent", count=3)["armed"]
    assert [(f["mode"], f["remaining"]) for f in listed] == [
        ("refuse_temporary", 1),
        ("drop", 1),
        ("refuse_permanent", 3),
    ]
    assert "refuse_permanent (3 left)" in web.get("/").text

    outcomes: list[int] = []
    for n in range(3):
        with smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=5) as client:
            try:
                client.send_message(_message(f"message {n}"))
                outcomes.append(250)
            except smtplib.SMTPDataError as exc:
                outcomes.append(exc.smtp_code)
    assert outcomes == [451, 250, 550]
    assert _subjects(web) == []
    remaining = web.get("/api/faults").json()["armed"]
    assert [(f["mode"], f["remaining"]) for f in remaining] == [("refuse_permanent", 2)]


async def test_clear_disarms(catcher: MailCatcher, web: httpx.Client) -> None:
    _arm(web, mode="refuse_permanent", count=5)
    assert web.delete("/api/faults").status_code == 204
    assert web.get("/api/faults").json() == {"armed": [], "fired": {}}
    assert "Staged failures" not in web.get("/").text
    await _send(catcher, "after clear")
    assert _subjects(web) == ["after clear"]


def test_arming_from_python(catcher: MailCatcher) -> None:
    catcher.faults.arm("refuse_permanent")
    with (
        smtplib.SMTP("127.0.0.1", catcher.smtp_port, timeout=5) as client,
        pytest.raises(smtplib.SMTPDataError),
    ):
        client.send_message(_message("refused"))
    assert catcher.messages() == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"mode": "bounce"}, "mode 'bounce' is unknown; use one of refuse_permanent"),
        ({"count": 1}, "mode is required"),
        ({"mode": "drop", "count": 0}, "count must be a whole number from 1 to 1000"),
        ({"mode": "drop", "count": 1001}, "count must be a whole number from 1 to 1000"),
        ({"mode": "drop", "count": "2"}, "count must be a whole number"),
        ({"mode": "drop", "count": True}, "count must be a whole number"),
        ({"mode": "drop", "times": 2}, "unknown field(s) times"),
        (["drop"], "send a JSON object"),
    ],
)
def test_bad_input_is_422_with_the_reason(web: httpx.Client, body: Any, words: str) -> None:
    response = web.post("/api/faults", json=body)
    assert response.status_code == 422
    assert words in response.json()["detail"]
    assert web.get("/api/faults").json()["armed"] == []


def test_malformed_json_is_400(web: httpx.Client) -> None:
    response = web.post(
        "/api/faults", content=b"{mode", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["detail"]
