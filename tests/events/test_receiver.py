"""The demo's events receiver, and how ``rxroute demo`` points events at it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rxroute import demo
from rxroute.config_secrets import DEMO_EVENTS_SECRET
from rxroute.events.delivery import signed_headers
from rxroute.events.receiver import EventReceiver
from rxroute.events.secrets import new_secret

DEMO = {"host": "127.0.0.1", "port": 8000, "sandbox_port": 8100, "smtp_port": 8025}
BODY = json.dumps({"type": "prescription.queued", "timestamp": "t", "data": {"status": "queued"}})


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith(("RXROUTE_EVENTS_", "RXROUTE_SMTP_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def test_receiver_verifies_drops_repeats_and_stages_failures(secret: str) -> None:
    with EventReceiver(secret, port=0) as receiver, httpx.Client() as client:
        good = signed_headers(secret, "evt_1", BODY, datetime.now(UTC))
        assert client.post(receiver.events_url, content=BODY, headers=good).status_code == 204
        assert client.post(receiver.events_url, content=BODY, headers=good).status_code == 204
        forged = signed_headers(new_secret(), "evt_2", BODY, datetime.now(UTC))
        answer = client.post(receiver.events_url, content=BODY, headers=forged)
        assert answer.status_code == 400 and "signature" in answer.json()["detail"]
        stale = signed_headers(secret, "evt_3", BODY, datetime.now(UTC) - timedelta(hours=1))
        assert client.post(receiver.events_url, content=BODY, headers=stale).status_code == 400
        missing = client.post(receiver.events_url, content=BODY)
        assert missing.status_code == 400
        assert client.post(f"{receiver.url}/api/faults", json={"fail_next": 1}).json() == {
            "fail_next": 1
        }
        fresh = signed_headers(secret, "evt_4", BODY, datetime.now(UTC))
        assert client.post(receiver.events_url, content=BODY, headers=fresh).status_code == 503
        assert client.post(receiver.events_url, content=BODY, headers=fresh).status_code == 204
        assert [e.message_id for e in receiver.events()] == ["evt_1", "evt_4"]
        assert (receiver.repeats, receiver.refused) == (1, 3)
        page = client.get(receiver.url + "/")
        assert page.status_code == 200 and "evt_4" in page.text
        assert [e["webhook_id"] for e in client.get(f"{receiver.url}/api/events").json()] == [
            "evt_1",
            "evt_4",
        ]


@pytest.mark.usefixtures("clean_environment")
def test_demo_sends_events_to_its_own_receiver_by_default() -> None:
    settings = demo.demo_settings(**DEMO)
    assert settings.events_url == "http://127.0.0.1:8027/events"
    assert settings.events_secret.get_secret_value() == DEMO_EVENTS_SECRET
    assert demo.demo_receiver(settings, "127.0.0.1", 8027) is not None


@pytest.mark.usefixtures("clean_environment")
def test_environment_events_settings_win_over_the_demo_receiver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = new_secret()
    monkeypatch.setenv("RXROUTE_EVENTS_SECRET", secret)
    settings = demo.demo_settings(**DEMO)
    # The receiver verifies with the secret rxroute signs with.
    assert settings.events_secret.get_secret_value() == secret
    assert demo.demo_receiver(settings, "127.0.0.1", 8027) is not None
    monkeypatch.setenv("rxroute_events_url", "http://127.0.0.1:9999/platform/events")
    settings = demo.demo_settings(**DEMO)
    assert settings.events_url == "http://127.0.0.1:9999/platform/events"
    assert demo.demo_receiver(settings, "127.0.0.1", 8027) is None


@pytest.mark.usefixtures("clean_environment")
def test_dot_env_does_not_redirect_the_demo_events(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "RXROUTE_EVENTS_URL=https://platform.example.com/events\n", encoding="utf-8"
    )
    assert demo.demo_settings(**DEMO).events_url == "http://127.0.0.1:8027/events"
