"""Fixtures and helpers for tests that send through the real client to a real sandbox.

The sandbox runs on a free 127.0.0.1 port in a thread (:class:`rxroute.sandbox.SandboxServer`);
a real :class:`SignatureRxClient` pointed at it goes into ``runtime.services["erx"]`` and the
runtime's settings get the sandbox URL and fast retries, both restored after the test.
Import the fixtures into a test module or conftest with
``from tests.erx_sandbox import erx, sandbox  # noqa: F401``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings
from rxroute.deliveries.sending import RetryScheduler, SendOutcome, send
from rxroute.models import Pharmacy, Prescription
from rxroute.prescriptions.lifecycle import Source
from rxroute.runtime import Runtime
from rxroute.sandbox import SandboxConfig, SandboxServer, load_config
from tests.factories import queue_delivery


def sandbox_config(**faults: Any) -> SandboxConfig:
    """The default accounts (what ``seed_demo`` matches), signing at once, seeded faults."""
    config = load_config(None)
    timings = config.timings.model_copy(update={"sign_delay_seconds": 0.0})
    merged = config.faults.model_copy(update={"seed": 4321, **faults})
    return config.model_copy(update={"timings": timings, "faults": merged})


@dataclass
class Erx:
    """The sandbox, the client talking to it, and the runtime they are wired into."""

    sandbox: SandboxServer
    client: SignatureRxClient
    runtime: Runtime
    settings: Settings

    async def control(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.sandbox.url, timeout=30) as http:
            response = await http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.control("GET", "/_sandbox/stats")
        return stats

    async def set_faults(self, **faults: Any) -> None:
        await self.control("PUT", "/_sandbox/faults", json=faults)

    def reconfigure(self, **updates: Any) -> SignatureRxClient:
        """A fresh client (no cached tokens) with changed settings, wired into the runtime."""
        self.settings = self.settings.model_copy(update=updates)
        self.runtime.settings = self.settings
        self.client = SignatureRxClient(self.settings)
        self.runtime.services["erx"] = self.client
        return self.client


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(sandbox_config(), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def erx(db: Runtime, sandbox: SandboxServer) -> AsyncIterator[Erx]:
    saved_settings = db.settings
    saved_service = db.services.get("erx")
    settings = db.settings.model_copy(
        update={
            "erx_base_url": sandbox.url,
            "erx_clinic_id": 994,
            "erx_send_backoff_seconds": 0.01,
            "erx_send_backoff_cap_seconds": 1.0,
            "erx_send_max_attempts": 8,
        }
    )
    client = SignatureRxClient(settings)
    db.settings = settings
    db.services["erx"] = client
    wired = Erx(sandbox=sandbox, client=client, runtime=db, settings=settings)
    try:
        yield wired
    finally:
        db.settings = saved_settings
        if saved_service is None:
            db.services.pop("erx", None)
        else:
            db.services["erx"] = saved_service
        await client.aclose()
        if wired.client is not client:
            await wired.client.aclose()


@dataclass
class RecordingRetries(RetryScheduler):
    """Records each retry the job asks for instead of deferring a delayed job."""

    delays: list[tuple[uuid.UUID, float]] = field(default_factory=list)

    async def __call__(
        self, session: AsyncSession, prescription_id: uuid.UUID, delay_seconds: float
    ) -> None:
        self.delays.append((prescription_id, delay_seconds))


async def send_until_done(
    runtime: Runtime,
    prescription_id: uuid.UUID,
    *,
    retries: RecordingRetries | None = None,
    max_runs: int = 200,
) -> list[SendOutcome]:
    """Run the send job, and again at once whenever it scheduled a retry, until it settles."""
    scheduler = retries if retries is not None else RecordingRetries()
    outcomes: list[SendOutcome] = []
    while True:
        outcome = await send(runtime, prescription_id, schedule_retry=scheduler)
        outcomes.append(outcome)
        if outcome.result != "retry":
            return outcomes
        assert len(outcomes) < max_runs, f"still retrying after {max_runs} runs: {outcomes[-3:]}"


async def queue_for_erx(
    session: AsyncSession, prescription_id: uuid.UUID, pharmacy: Pharmacy
) -> None:
    """What a patient's send request records, without going through the API."""
    prescription = await session.get(Prescription, prescription_id)
    assert prescription is not None
    prescription.region = pharmacy.region
    prescription.channel = "erx"
    prescription.pharmacy_id = pharmacy.id
    await queue_delivery(session, prescription_id, source=Source.PATIENT)


async def region_b_pharmacies(session: AsyncSession) -> list[Pharmacy]:
    return list(
        await session.scalars(
            select(Pharmacy)
            .where(Pharmacy.region == "B", Pharmacy.active.is_(True))
            .order_by(Pharmacy.platform_contact_id)
        )
    )


async def gather_in_batches(
    items: list[uuid.UUID],
    size: int,
    work: Callable[[uuid.UUID], Any],
) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(items), size):
        results.extend(await asyncio.gather(*(work(item) for item in items[start : start + size])))
    return results
