"""How many token grants and logins do 1,000 sends cost, and what does the client add?

Run by hand: ``python bench/bench_erx_tokens.py [--sends N] [--concurrency C]``.

One prescriber sends N prescriptions against a respx-mocked platform at the sandbox's
default token lifetimes (access 3600 s, session 1800 s). Target: at most 2 grants and
2 logins per 1,000 sends. Throughput is compared with the same mock called with raw httpx
(tokens already in hand, no checks), so the ratio shows the client's own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
import time
from datetime import date

import httpx
import respx
import structlog

from rxroute.channels.erx.base import PrescriberCredentials
from rxroute.channels.erx.contract import IssuePayload
from rxroute.channels.erx.payload import MedicineItem, PatientDetails, build_issue_payload
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings

BASE = "http://erx.bench"
ACCESS_LIFETIME = 3600
SESSION_LIFETIME = 1800
PRESCRIBER = PrescriberCredentials(
    "bench-prescriber", "dr.bench@example.com", "bench-password", "123456"
)


class MockPlatform:
    def __init__(self, router: respx.MockRouter) -> None:
        self.grants = 0
        self.logins = 0
        self.issued = 0
        self._ids = itertools.count(1)
        router.post(BASE + "/oauth/token").mock(side_effect=self.token)
        router.post(BASE + "/api/v1/login").mock(side_effect=self.login)
        router.post(BASE + "/api/v1/prescriptions").mock(side_effect=self.issue)

    def token(self, request: httpx.Request) -> httpx.Response:
        self.grants += 1
        body = {
            "access_token": f"acc-{self.grants}",
            "token_type": "bearer",
            "expires_in": ACCESS_LIFETIME,
        }
        return httpx.Response(200, json=body)

    def login(self, request: httpx.Request) -> httpx.Response:
        self.logins += 1
        body = {
            "success": True,
            "data": {
                "token": f"sess-{self.logins}",
                "expires_in": SESSION_LIFETIME,
                "prescriber": {"id": 501},
            },
        }
        return httpx.Response(200, json=body)

    def issue(self, request: httpx.Request) -> httpx.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return httpx.Response(401, json={"success": False, "message": "Unauthenticated."})
        if "X-Prescriber-Token" not in request.headers:
            return httpx.Response(401, json={"success": False, "message": "Unauthenticated."})
        payload = json.loads(request.content)
        self.issued += 1
        record = {
            "id": f"SRXC{next(self._ids):011X}",
            "status": "issued",
            "client_ref_id": payload["client_ref_id"],
            "token": "tok",
        }
        return httpx.Response(
            200,
            json={
                "success": True,
                "message": "Prescription issued.",
                "data": {"prescription": record},
            },
        )


def payload(index: int) -> dict[str, object]:
    built = build_issue_payload(
        patient=PatientDetails(
            "Bench",
            "Patient",
            date(1980, 1, 2),
            "Other",
            "bench@example.com",
            "+44 7700 900999",
            "1 Bench Street",
            "",
            "Leeds",
            "LS1 4AP",
            "GB",
        ),
        items=[MedicineItem("Orlistat 120mg capsules", "84 capsules", "One with meals")],
        clinic_id=994,
        contact_id=5001,
        secure_pin="123456",
        client_ref_id=f"bench-{index}",
        prescriber_ip="203.0.113.7",
    )
    return built.to_wire()


async def run_client(sends: int, concurrency: int) -> tuple[float, MockPlatform]:
    settings = Settings(_env_file=None, erx_base_url=BASE)  # type: ignore[call-arg]
    with respx.mock(assert_all_called=False) as router:
        platform = MockPlatform(router)
        async with httpx.AsyncClient() as http:
            client = SignatureRxClient(settings, http=http)
            bodies = [IssuePayload.model_validate(payload(i)) for i in range(sends)]
            semaphore = asyncio.Semaphore(concurrency)

            async def send(body: IssuePayload) -> None:
                async with semaphore:
                    await client.issue(PRESCRIBER, body)

            started = time.perf_counter()
            await asyncio.gather(*(send(b) for b in bodies))
            elapsed = time.perf_counter() - started
    return elapsed, platform


async def run_raw(sends: int, concurrency: int) -> float:
    with respx.mock(assert_all_called=False) as router:
        MockPlatform(router)
        bodies = [payload(i) for i in range(sends)]
        headers = {
            "Authorization": "Bearer acc-1",
            "X-Prescriber-Token": "sess-1",
            "Accept": "application/json",
        }
        async with httpx.AsyncClient() as http:
            semaphore = asyncio.Semaphore(concurrency)

            async def send(body: dict[str, object]) -> None:
                async with semaphore:
                    response = await http.post(
                        BASE + "/api/v1/prescriptions", json=body, headers=headers
                    )
                    response.json()

            started = time.perf_counter()
            await asyncio.gather(*(send(b) for b in bodies))
            return time.perf_counter() - started


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    # Per-send info lines would dominate the timing and the output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    raw_elapsed = await run_raw(args.sends, args.concurrency)
    client_elapsed, platform = await run_client(args.sends, args.concurrency)
    per_k = 1000 / args.sends
    grants = platform.grants * per_k
    logins = platform.logins * per_k
    raw_rate = args.sends / raw_elapsed
    client_rate = args.sends / client_elapsed
    print(
        f"sends:                {args.sends} (concurrency {args.concurrency}), "
        f"issued {platform.issued}"
    )
    print(f"token grants / 1000:  {grants:.1f}  (target <= 2)")
    print(f"logins / 1000:        {logins:.1f}  (target <= 2)")
    print(f"raw httpx baseline:   {raw_rate:,.0f} sends/s")
    print(f"SignatureRxClient:    {client_rate:,.0f} sends/s")
    print(f"client / raw ratio:   {client_rate / raw_rate:.2f}")
    ok = grants <= 2 and logins <= 2 and platform.issued == args.sends
    print("RESULT:", "OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
