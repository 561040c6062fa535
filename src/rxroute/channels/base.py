"""The one interface every delivery channel implements, and the typed failures it raises.

A channel gets a prescription to a pharmacy (Region A: a PDF by email; Region B: the
e-prescription platform), takes it back (a void on the platform, a cancellation email), and
says what the far side holds where it can. Everything else - the delivery ledger, the
attempt counter, retries, status history - is the same code for every channel
(:mod:`rxroute.deliveries`), so a new channel is one package and one registry entry.

Methods that call out (``look_up``, ``deliver``, ``withdraw``, ``poll``) never touch the
database: the caller prepares what they need in a short transaction (``prepare``), calls
out with no transaction open, and records the outcome in another.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rxroute.prescriptions.lifecycle import Status

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from rxroute.config import Settings
    from rxroute.models import Delivery, Pharmacy, Prescription
    from rxroute.runtime import Runtime


T = TypeVar("T")


class RowSource(Protocol):
    """Where ``prepare`` finds, by primary key, the rows it reads besides the prescription
    and the delivery (the delivery's pharmacy, the prescription's clinic).

    An ``AsyncSession`` is one: the general path passes its own, inside its transaction.
    The send's common path passes the rows its one statement already read
    (:class:`rxroute.deliveries.send_graph.LoadedRows`), so a send opens no session at all.
    ``prepare`` needs nothing else from a session, so it is given nothing else.
    """

    async def get(self, entity: type[T], ident: Any, /) -> T | None: ...


class Purpose(enum.StrEnum):
    """What a prepared delivery is for: each needs different things from the database."""

    DELIVER = "deliver"
    RESEND = "resend"
    WITHDRAW = "withdraw"
    POLL = "poll"


@dataclass(frozen=True)
class RetryPolicy:
    """How a channel retries a series of attempts: exponential backoff with a cap."""

    max_attempts: int
    base_seconds: float
    cap_seconds: float

    def delay(self, attempt: int, hint: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``; the far side's own hint wins when given."""
        if hint is not None and hint > 0:
            return float(min(hint, self.cap_seconds))
        return float(min(self.base_seconds * (2 ** max(0, attempt - 1)), self.cap_seconds))

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts


@dataclass(frozen=True)
class FarSideCopy:
    """A copy the far side holds: its reference, its status, and where it is addressed."""

    ref: str
    status: Status
    raw_status: str
    #: The pharmacy it is addressed to, in the channel's terms (platform contact ID).
    destination: str | None = None
    token: str | None = None

    @property
    def is_live(self) -> bool:
        return not self.status.is_final


@dataclass(frozen=True)
class Delivered:
    """The far side accepted the delivery."""

    ref: str
    raw_status: str
    token: str | None = None


@dataclass(frozen=True)
class Withdrawn:
    """The far side took it back (or was told to)."""

    raw_status: str | None = None
    detail: str = ""


class DeliveryError(Exception):
    """A channel failure, in words support can act on (never PHI)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DeliveryRetryable(DeliveryError):
    """Worth trying again. ``ambiguous``: the far side may have acted on it anyway."""

    def __init__(
        self, message: str, *, ambiguous: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous
        self.retry_after = retry_after


class DeliveryRejected(DeliveryError):
    """The far side said no; trying again would not change its mind.

    ``final_status``: the far side says the copy is already in this final state (e.g. a
    void refused because the pharmacy dispensed it): a fact to record, not only a refusal.
    """

    def __init__(self, message: str, *, final_status: Status | None = None) -> None:
        super().__init__(message)
        self.final_status = final_status


class NotSendable(DeliveryError):
    """Our own data cannot make a valid delivery (no PIN stored, no email address...)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Channel(Protocol):
    #: The registry name, as used in ``RXROUTE_REGION_CHANNELS``.
    name: str
    #: The status a successful delivery records (issued, emailed).
    delivered_status: Status
    #: What a delivery attempt is called in the attempts log (issue, email).
    deliver_action: str
    #: Whether reconciliation should poll live deliveries (the far side reports statuses).
    polls: bool

    def retry_policy(self, settings: Settings) -> RetryPolicy: ...

    def pharmacy_problem(self, pharmacy: Pharmacy) -> str | None:
        """Why this pharmacy cannot receive through the channel, or None when it can."""
        ...

    def destination(self, pharmacy: Pharmacy) -> str | None:
        """The pharmacy's address in the channel's terms (contact ID, email)."""
        ...

    async def prepare(
        self,
        runtime: Runtime,
        session: RowSource,
        prescription: Prescription,
        delivery: Delivery,
        purpose: Purpose,
    ) -> Any:
        """Everything the call-out needs, read inside a transaction (other rows only through
        ``session.get``). Raises NotSendable."""
        ...

    async def look_up(self, runtime: Runtime, prepared: Any) -> list[FarSideCopy] | None:
        """The copies the far side holds of this prescription; None if it cannot tell."""
        ...

    async def deliver(self, runtime: Runtime, prepared: Any) -> Delivered: ...

    async def withdraw(
        self, runtime: Runtime, prepared: Any, copy: FarSideCopy | None
    ) -> Withdrawn: ...

    async def poll(self, runtime: Runtime, prepared: Any, ref: str) -> FarSideCopy: ...

    async def record_rejection(
        self,
        session: AsyncSession,
        prescription: Prescription,
        delivery: Delivery,
        error: DeliveryRejected,
    ) -> None:
        """What a refused send says about the setup, recorded in the failure's transaction.

        A channel whose far side can say "this pharmacy or prescriber is set up wrong"
        marks it here (Region B withholds the pharmacy); others record nothing.
        """
        ...
