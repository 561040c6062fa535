"""The README's ten-line receiver works as printed: it accepts rxroute's signed events and
refuses a forged one."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from rxroute.events.delivery import signed_headers
from rxroute.events.secrets import new_secret

README = Path(__file__).resolve().parents[2] / "README.md"
BODY = (
    '{"type":"prescription.queued","timestamp":"2026-07-01T12:00:00.000Z","data":'
    '{"prescription_id":"p1","external_id":null,"status":"queued","previous_status":"draft",'
    '"occurred_at":"2026-07-01T12:00:00.000Z","region":"B","pharmacy_id":"ph1"}}'
)


def _receiver_source() -> str:
    text = README.read_text()
    section = text[text.index("## Events out") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no receiver example in the README's Events out section"
    code = match.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    return code


async def test_the_readme_receiver_verifies_rxroute_events() -> None:
    secret = new_secret()
    namespace: dict[str, Any] = {}
    exec(_receiver_source().replace('"whsec_..."', repr(secret)), namespace)  # noqa: S102
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver.test") as client:
        good = signed_headers(secret, "evt_1", BODY, datetime.now(UTC))
        accepted = await client.post("/rxroute/events", content=BODY, headers=good)
        assert accepted.status_code == 204
        forged = signed_headers(new_secret(), "evt_2", BODY, datetime.now(UTC))
        refused = await client.post("/rxroute/events", content=BODY, headers=forged)
        assert refused.status_code == 400
