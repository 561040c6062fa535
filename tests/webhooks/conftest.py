"""The sandbox platform on a free 127.0.0.1 port, with rxroute's real client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings
from rxroute.runtime import Runtime
from rxroute.sandbox import SandboxServer, load_config


@pytest.fixture
async def platform(
    db: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the sandbox's control API. No webhook URL: every webhook is lost."""
    config = load_config(None)
    config = config.model_copy(
        update={
            "timings": config.timings.model_copy(update={"sign_delay_seconds": 0.0}),
            "webhook": config.webhook.model_copy(update={"url": None}),
        }
    )
    async with SandboxServer(config) as sandbox:
        erx = SignatureRxClient(settings.model_copy(update={"erx_base_url": sandbox.url}))
        monkeypatch.setitem(db.services, "erx", erx)
        async with httpx.AsyncClient(base_url=sandbox.url, trust_env=False) as control:
            yield control
        await erx.aclose()
