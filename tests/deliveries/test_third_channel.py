"""A third channel, defined here in the tests only, runs end to end with no core module edited.

It proves the Channel interface and the registry are the whole plug-in surface: settings
validation, the send endpoint's pharmacy check, the send job, re-routing (withdrawal) and
cancelling all reach the fake through the registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.channels import registry
from rxroute.channels.base import (
    Delivered,
    DeliveryRejected,
    DeliveryRetryable,
    FarSideCopy,
    Purpose,
    RetryPolicy,
    Withdrawn,
)
from rxroute.config import Settings
from rxroute.models import Delivery, Pharmacy, Prescription, Role
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime
from tests.auth.helpers import bearer
from tests.erx_sandbox import RecordingRetries, send_until_done
from tests.factories import (
    make_patient,
    make_pharmacy,
    make_prescriber,
    make_prescription,
    make_user,
)


@dataclasses.dataclass
class FaxLine:
    """The far side: what the fax machine at each pharmacy holds."""

    sent: dict[str, str] = dataclasses.field(default_factory=dict)  # ref -> fax number
    cancelled: list[str] = dataclasses.field(default_factory=list)
    busy_next: int = 0


class FaxChannel:
    name = "fax"
    deliver_action = "fax"
    delivered_status = Status.ISSUED
    polls = False

    def __init__(self, line: FaxLine) -> None:
        self.line = line

    def retry_policy(self, settings: Settings) -> RetryPolicy:
        return RetryPolicy(max_attempts=3, base_seconds=0.5, cap_seconds=2.0)

    def pharmacy_problem(self, pharmacy: Pharmacy) -> str | None:
        # A fax-to-email gateway: the pharmacy's email address is its fax line.
        return None if pharmacy.email else "this pharmacy has no fax line"

    def destination(self, pharmacy: Pharmacy) -> str | None:
        return pharmacy.email

    async def prepare(
        self,
        runtime: Runtime,
        session: AsyncSession,
        prescription: Prescription,
        delivery: Delivery,
        purpose: Purpose,
    ) -> Any:
        pharmacy = await session.get(Pharmacy, delivery.pharmacy_id)
        assert pharmacy is not None
        return (purpose, pharmacy.email, f"fax-{delivery.id}")

    async def look_up(self, runtime: Runtime, prepared: Any) -> list[FarSideCopy] | None:
        return None

    async def deliver(self, runtime: Runtime, prepared: Any) -> Delivered:
        _purpose, number, ref = prepared
        if self.line.busy_next:
            self.line.busy_next -= 1
            raise DeliveryRetryable("the line was busy")
        self.line.sent[ref] = number
        return Delivered(ref=ref, raw_status="transmitted")

    async def withdraw(
        self, runtime: Runtime, prepared: Any, copy: FarSideCopy | None
    ) -> Withdrawn:
        _purpose, number, _ref = prepared
        self.line.cancelled.append(number)
        return Withdrawn(detail=f"cancellation faxed to {number}")

    async def poll(self, runtime: Runtime, prepared: Any, ref: str) -> FarSideCopy:
        raise AssertionError("a channel that does not poll is never polled")

    async def record_rejection(
        self,
        session: AsyncSession,
        prescription: Prescription,
        delivery: Delivery,
        error: DeliveryRejected,
    ) -> None:
        """A refused fax says nothing about the setup."""


@pytest.fixture
async def fax(db: Runtime) -> AsyncIterator[FaxLine]:
    line = FaxLine()
    registry.register("fax", lambda runtime: FaxChannel(line))
    saved = db.settings
    db.settings = Settings(
        **{
            **saved.model_dump(),
            "region_channels": {**saved.region_channels, "C": "fax"},
        }
    )
    db.services.pop("channel:fax", None)
    try:
        yield line
    finally:
        db.settings = saved
        db.services.pop("channel:fax", None)
        registry.unregister("fax")


def test_settings_accept_a_registered_channel_and_name_an_unknown_one(fax: FaxLine) -> None:
    assert "fax" in registry.channel_names()
    with pytest.raises(ValueError, match="unknown channel 'telex'"):
        Settings(region_channels={"C": "telex"}, _env_file=None)  # type: ignore[call-arg]


async def test_a_test_only_channel_sends_reroutes_and_cancels_end_to_end(
    db: Runtime, session: AsyncSession, fax: FaxLine, client: httpx.AsyncClient
) -> None:
    patient = await make_patient(session, region="C")
    user = await make_user(session, Role.PATIENT, patient=patient)
    prescriber = await make_prescriber(session, db.secret_box)
    prescription = await make_prescription(session, patient, prescriber)
    first = await make_pharmacy(session, "C", email="fax-1@example.com", platform_contact_id=None)
    second = await make_pharmacy(session, "C", email="fax-2@example.com", platform_contact_id=None)
    silent = await make_pharmacy(session, "C", email=None, platform_contact_id=None)
    await session.commit()
    pid = prescription.id
    headers = await bearer(db, user.id)

    if client:
        refused = await client.post(
            f"/api/v1/prescriptions/{pid}/send",
            json={"region": "C", "pharmacy_id": str(silent.id)},
            headers=headers,
        )
        assert refused.status_code == 422
        assert "no fax line" in refused.json()["detail"]

        sent = await client.post(
            f"/api/v1/prescriptions/{pid}/send",
            json={"region": "C", "pharmacy_id": str(first.id)},
            headers=headers,
        )
        assert sent.status_code == 202, sent.text
        fax.busy_next = 1
        retries = RecordingRetries()
        outcomes = await send_until_done(db, pid, retries=retries)
        assert [o.result for o in outcomes] == ["retry", "issued"]
        assert [delay for _, delay in retries.delays] == [0.5]
        assert list(fax.sent.values()) == ["fax-1@example.com"]

        moved = await client.post(
            f"/api/v1/prescriptions/{pid}/reroute",
            json={"region": "C", "pharmacy_id": str(second.id)},
            headers=headers,
        )
        assert moved.status_code == 202, moved.text
        assert (await send_until_done(db, pid))[-1].result == "issued"
        assert fax.cancelled == ["fax-1@example.com"]
        assert sorted(fax.sent.values()) == ["fax-1@example.com", "fax-2@example.com"]

        cancelled = await client.post(
            f"/api/v1/prescriptions/{pid}/cancel",
            json={"reason": "changed my mind"},
            headers=headers,
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "voided"
        await send_until_done(db, pid)
        assert fax.cancelled == ["fax-1@example.com", "fax-2@example.com"]

        detail = (await client.get(f"/api/v1/prescriptions/{pid}", headers=headers)).json()
        by_delivery: dict[str, list[str]] = {}
        for event in detail["history"]:
            by_delivery.setdefault(event["delivery_id"], []).append(event["status"])
        # Each delivery's own story, each real transition once; delivery 1 ends withdrawn.
        assert list(by_delivery.values()) == [
            ["queued", "sending", "issued", "voided"],
            ["queued", "sending", "issued", "voided"],
        ]
        assert detail["status"] == "voided"
        assert [(d["number"], d["state"], d["channel"]) for d in detail["deliveries"]] == [
            (1, "superseded", "fax"),
            (2, "withdrawn", "fax"),
        ]
