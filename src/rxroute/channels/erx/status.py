"""Provider status -> rxroute status.

A status we do not know must stop the update loudly: silently treating it as, say,
"issued" would hide a dispensed or voided prescription from the pharmacy and the patient.
"""

from __future__ import annotations

import enum

from rxroute.channels.erx.errors import ErxError


class ProviderStatus(enum.StrEnum):
    ISSUED = "issued"
    SIGNED = "signed"
    PRINTED = "printed"
    DISPENSED = "dispensed"
    EXPIRED = "expired"
    VOIDED = "voided"


#: Provider statuses after which nothing else happens on the platform.
TERMINAL: frozenset[ProviderStatus] = frozenset(
    {ProviderStatus.DISPENSED, ProviderStatus.EXPIRED, ProviderStatus.VOIDED}
)


class UnknownProviderStatus(ErxError, ValueError):
    """The platform sent a status this version of rxroute does not know."""

    def __init__(self, raw: object) -> None:
        shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:37] + "..."
        super().__init__(
            f"unknown provider status {shown}; known: {', '.join(s.value for s in ProviderStatus)}"
        )
        self.raw = raw


def parse(raw: str) -> ProviderStatus:
    """The typed provider status; surrounding whitespace and letter case are tolerated."""
    if not isinstance(raw, str):
        raise UnknownProviderStatus(raw)
    match raw.strip().lower():
        case "issued":
            return ProviderStatus.ISSUED
        case "signed":
            return ProviderStatus.SIGNED
        case "printed":
            return ProviderStatus.PRINTED
        case "dispensed":
            return ProviderStatus.DISPENSED
        case "expired":
            return ProviderStatus.EXPIRED
        case "voided":
            return ProviderStatus.VOIDED
        case _:
            raise UnknownProviderStatus(raw)


def from_provider(raw: str) -> str:
    """The rxroute status string the lifecycle state machine uses for a provider status."""
    status = parse(raw)
    match status:
        case ProviderStatus.ISSUED:
            return "issued"
        case ProviderStatus.SIGNED:
            return "signed"
        case ProviderStatus.PRINTED:
            return "printed"
        case ProviderStatus.DISPENSED:
            return "dispensed"
        case ProviderStatus.EXPIRED:
            return "expired"
        case ProviderStatus.VOIDED:
            return "voided"
