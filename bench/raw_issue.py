"""The send bench's baseline: raw issue calls with httpx, nothing stored (bench_send.py).

A module of its own, importing only httpx, so it can also run as a process of its own under
callgrind (``bench_send.py --callgrind``), where every import costs fifty times over::

    python bench/raw_issue.py URL CALLS CONCURRENCY
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import httpx

CLIENT_ID = "rxroute-demo-client"
CLIENT_SECRET = "demo-only-sandbox-client-secret"
ALICE = ("dr.alice.hartfield@example.com", "sandbox-prescriber-alice", "123456")


def raw_payload(client_ref_id: str) -> dict[str, Any]:
    return {
        "action": "issueToContact",
        "clinic_id": 994,
        "contact_id": 5001,
        "secure_pin": ALICE[2],
        "prescriber_ip": "203.0.113.7",
        "notify": True,
        "client_ref_id": client_ref_id,
        "notes": "Bench baseline",
        "patient": {
            "first_name": "Bench",
            "last_name": "Testpatient",
            "gender": "Female",
            "email": "bench@example.com",
            "phone": "447700900123",
            "birth_day": "07",
            "birth_month": "03",
            "birth_year": "1985",
            "address_ln1": "1 High Street",
            "address_ln2": "",
            "city": "Leeds",
            "post_code": "LS1 4AP",
            "country": "GB",
        },
        "medicines": [
            {"description": "Semaglutide 0.25mg pen", "qty": "1", "directions": "Weekly"}
        ],
    }


async def baseline(base_url: str, count: int, concurrency: int) -> float:
    """Seconds for ``count`` raw issue calls at ``concurrency``, tokens fetched once up front."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        token = await http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
        access = token.json()["access_token"]
        login = await http.post(
            "/api/v1/login",
            headers={"Authorization": f"Bearer {access}"},
            json={"email": ALICE[0], "password": ALICE[1]},
        )
        headers = {
            "Authorization": f"Bearer {access}",
            "X-Prescriber-Token": login.json()["data"]["token"],
        }
        gate = asyncio.Semaphore(concurrency)
        failures = 0

        async def one(index: int) -> None:
            nonlocal failures
            async with gate:
                response = await http.post(
                    "/api/v1/prescriptions",
                    headers=headers,
                    json=raw_payload(f"baseline-{index}"),
                )
                if not response.json().get("success"):
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"baseline: {failures} raw issue calls failed")
    return elapsed


if __name__ == "__main__":
    url, calls, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    asyncio.run(baseline(url, calls, concurrency))
