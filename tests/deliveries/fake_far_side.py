"""An in-memory far side for the interleaving tests: the platform and a fax line.

The platform channel (``erx``) is replaced through the registry by :class:`FakePlatform`,
whose ``look_up`` returns the copies it holds with their destinations, so rxroute's lookup,
adoption and voiding of stray copies run for real; :class:`FakeFax` is a second channel with
no lookup (a cancellation instead of a void). Faults are armed on :class:`FarSide` for the
next call: a 5xx, a refusal, an answer lost after the far side acted, a request that never
landed, or the worker dying (:class:`WorkerCrashed`) before or after the far side acted.
``during_call`` runs other steps while a call is in flight (after the far side acted, before
the caller hears back), as a webhook racing the platform's answer does.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

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
from rxroute.models import Delivery, Pharmacy, Prescription
from rxroute.prescriptions.lifecycle import Status
from rxroute.runtime import Runtime

#: Attempts per series: small, so series really run out and re-queues matter.
MAX_ATTEMPTS = 3


class WorkerCrashed(Exception):
    """The worker died here: nothing after this point of the job ran."""


@dataclass
class PlatformCopy:
    ref: str
    client_ref: str
    destination: str
    #: The delivery whose call created it (what the test knows; rxroute must work it out).
    made_for: uuid.UUID
    status: Status = Status.ISSUED


@dataclass
class FaxCopy:
    destination: str
    made_for: uuid.UUID
    live: bool = True


@dataclass(frozen=True)
class FarEvent:
    ref: str
    client_ref: str
    status: Status


@dataclass
class FarSide:
    """What the platform and the fax machines hold, the webhooks they owe, and armed faults."""

    copies: dict[str, PlatformCopy] = field(default_factory=dict)
    faxes: dict[uuid.UUID, FaxCopy] = field(default_factory=dict)
    outbox: list[FarEvent] = field(default_factory=list)
    sent: set[int] = field(default_factory=set)
    deliver_fault: str = "ok"
    void_fault: str = "ok"
    lookup_fails: bool = False
    during_call: Callable[[], Awaitable[None]] | None = None
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    #: What happened, for hypothesis' statistics.
    seen: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        """A fresh far side for the next example (the registered channels keep this object)."""
        fresh = FarSide()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def take_deliver_fault(self) -> str:
        fault, self.deliver_fault = self.deliver_fault, "ok"
        return fault

    def take_void_fault(self) -> str:
        fault, self.void_fault = self.void_fault, "ok"
        return fault

    async def in_flight(self) -> None:
        """The far side acted; the caller has not heard back yet. Other things happen now."""
        hook, self.during_call = self.during_call, None
        if hook is not None:
            self.seen["steps while a call was in flight"] += 1
            await hook()

    def change(self, copy: PlatformCopy, status: Status) -> None:
        copy.status = status
        self.outbox.append(FarEvent(copy.ref, copy.client_ref, status))

    def issue(self, prepared: Prepared) -> PlatformCopy:
        ref = f"SRX{next(self.numbers):06d}-{uuid.uuid4().hex[:6]}"
        copy = PlatformCopy(ref, prepared.client_ref, prepared.destination, prepared.delivery_id)
        self.copies[ref] = copy
        self.outbox.append(FarEvent(ref, copy.client_ref, Status.ISSUED))
        return copy

    def act(self, index: int, action: str) -> None:
        """The prescriber, the pharmacy, the clock or the clinic acting on a copy."""
        if not self.copies:
            return
        ordered = list(self.copies.values())
        copy = ordered[-1 - index % len(ordered)]  # 0 is the newest copy
        allowed = {
            "sign": ({Status.ISSUED}, Status.SIGNED),
            "print": ({Status.SIGNED}, Status.PRINTED),
            "dispense": ({Status.SIGNED, Status.PRINTED}, Status.DISPENSED),
            "expire": ({Status.ISSUED, Status.SIGNED, Status.PRINTED}, Status.EXPIRED),
            "void": ({Status.ISSUED, Status.SIGNED, Status.PRINTED}, Status.VOIDED),
        }
        before, after = allowed[action]
        if copy.status in before:
            self.change(copy, after)
            self.seen[f"far side: {action}"] += 1

    def live_copies(self) -> list[tuple[uuid.UUID, str, str]]:
        """(made for, channel, reference) of every copy someone could still dispense."""
        platform = [
            (c.made_for, "erx", c.ref) for c in self.copies.values() if not c.status.is_final
        ]
        fax = [(d, "fax", f"fax-{d}") for d, f in self.faxes.items() if f.live]
        return platform + fax


@dataclass(frozen=True)
class Prepared:
    purpose: Purpose
    client_ref: str
    delivery_id: uuid.UUID
    destination: str


class FakePlatform:
    """The platform channel, in memory; registered under ``erx`` for the test's duration."""

    name = "erx"
    deliver_action = "issue"
    delivered_status = Status.ISSUED
    polls = True

    def __init__(self, far: FarSide) -> None:
        self.far = far

    def retry_policy(self, settings: Settings) -> RetryPolicy:
        return RetryPolicy(max_attempts=MAX_ATTEMPTS, base_seconds=0.01, cap_seconds=0.1)

    def pharmacy_problem(self, pharmacy: Pharmacy) -> str | None:
        return None if pharmacy.platform_contact_id else "no e-prescription contact ID"

    def destination(self, pharmacy: Pharmacy) -> str | None:
        contact = pharmacy.platform_contact_id
        return None if contact is None else str(contact)

    async def prepare(
        self,
        runtime: Runtime,
        session: AsyncSession,
        prescription: Prescription,
        delivery: Delivery,
        purpose: Purpose,
    ) -> Prepared:
        pharmacy = await session.get(Pharmacy, delivery.pharmacy_id)
        assert pharmacy is not None
        return Prepared(
            purpose, str(prescription.id), delivery.id, str(pharmacy.platform_contact_id)
        )

    async def look_up(self, runtime: Runtime, prepared: Any) -> list[FarSideCopy] | None:
        if self.far.lookup_fails:
            raise DeliveryRetryable("lookup: the platform answered 503")
        return [
            FarSideCopy(
                ref=c.ref, status=c.status, raw_status=c.status.value, destination=c.destination
            )
            for c in self.far.copies.values()
            if c.client_ref == prepared.client_ref
        ]

    async def deliver(self, runtime: Runtime, prepared: Any) -> Delivered:
        fault = self.far.take_deliver_fault()
        if fault == "error":
            raise DeliveryRetryable("issue failed: the platform answered 503")
        if fault == "reject":
            raise DeliveryRejected("The selected contact is invalid.")
        if fault == "crash_before":
            self.far.seen["worker died before the issue landed"] += 1
            raise WorkerCrashed
        if fault == "lost_request":
            self.far.seen["issue timed out without landing"] += 1
            raise DeliveryRetryable("issue: no answer within the deadline", ambiguous=True)
        copy = self.far.issue(prepared)
        await self.far.in_flight()
        if fault == "crash_after":
            self.far.seen["worker died after the issue landed"] += 1
            raise WorkerCrashed
        if fault == "lost_answer":
            self.far.seen["issue landed, answer lost"] += 1
            raise DeliveryRetryable("issue: connection dropped", ambiguous=True)
        return Delivered(ref=copy.ref, raw_status="issued")

    async def withdraw(
        self, runtime: Runtime, prepared: Any, copy: FarSideCopy | None
    ) -> Withdrawn:
        if copy is None:
            return Withdrawn(detail="nothing on the platform to void")
        fault = self.far.take_void_fault()
        if fault == "error":
            raise DeliveryRetryable("void failed: the platform answered 503")
        held = self.far.copies[copy.ref]
        if held.status is Status.DISPENSED:
            raise DeliveryRejected("Prescription already dispensed.", final_status=Status.DISPENSED)
        if not held.status.is_final:
            self.far.change(held, Status.VOIDED)
            self.far.seen["rxroute voided a copy"] += 1
        if fault == "crash_after":
            self.far.seen["worker died after a void landed"] += 1
            raise WorkerCrashed
        return Withdrawn(raw_status=held.status.value, detail=f"voided {held.ref}")

    async def poll(self, runtime: Runtime, prepared: Any, ref: str) -> FarSideCopy:
        held = self.far.copies.get(ref)
        if held is None:
            raise DeliveryRejected(f"no prescription {ref} on the platform")
        return FarSideCopy(held.ref, held.status, held.status.value, held.destination)

    async def record_rejection(
        self,
        session: AsyncSession,
        prescription: Prescription,
        delivery: Delivery,
        error: DeliveryRejected,
    ) -> None:
        """The fake platform's refusals say nothing about the setup."""


class FakeFax:
    """Another channel: no lookup, a cancellation instead of a void, one copy per delivery."""

    name = "fax"
    deliver_action = "fax"
    delivered_status = Status.EMAILED
    polls = False

    def __init__(self, far: FarSide) -> None:
        self.far = far

    def retry_policy(self, settings: Settings) -> RetryPolicy:
        return RetryPolicy(max_attempts=MAX_ATTEMPTS, base_seconds=0.01, cap_seconds=0.1)

    def pharmacy_problem(self, pharmacy: Pharmacy) -> str | None:
        return None if pharmacy.email else "no fax line"

    def destination(self, pharmacy: Pharmacy) -> str | None:
        return pharmacy.email

    async def prepare(
        self,
        runtime: Runtime,
        session: AsyncSession,
        prescription: Prescription,
        delivery: Delivery,
        purpose: Purpose,
    ) -> Prepared:
        pharmacy = await session.get(Pharmacy, delivery.pharmacy_id)
        assert pharmacy is not None and pharmacy.email is not None
        return Prepared(purpose, str(prescription.id), delivery.id, pharmacy.email)

    async def look_up(self, runtime: Runtime, prepared: Any) -> list[FarSideCopy] | None:
        return None

    async def deliver(self, runtime: Runtime, prepared: Any) -> Delivered:
        fault = self.far.take_deliver_fault()
        if fault == "error":
            raise DeliveryRetryable("the line was busy")
        if fault == "reject":
            raise DeliveryRejected("the number is not a fax line")
        if fault == "crash_before":
            raise WorkerCrashed
        if fault == "lost_request":
            raise DeliveryRetryable("no answer from the line", ambiguous=True)
        # The same delivery faxed again is the same reference: one copy, not two.
        self.far.faxes[prepared.delivery_id] = FaxCopy(prepared.destination, prepared.delivery_id)
        await self.far.in_flight()
        if fault == "crash_after":
            raise WorkerCrashed
        if fault == "lost_answer":
            raise DeliveryRetryable("the line dropped after the last page", ambiguous=True)
        return Delivered(ref=f"fax-{prepared.delivery_id}", raw_status="transmitted")

    async def withdraw(
        self, runtime: Runtime, prepared: Any, copy: FarSideCopy | None
    ) -> Withdrawn:
        fault = self.far.take_void_fault()
        if fault == "error":
            raise DeliveryRetryable("the line was busy")
        held = self.far.faxes.get(prepared.delivery_id)
        if held is not None and held.live:
            held.live = False
            self.far.seen["fax cancelled"] += 1
        if fault == "crash_after":
            raise WorkerCrashed
        return Withdrawn(detail="cancellation faxed")

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
