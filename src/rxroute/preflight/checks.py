"""The vocabulary of ``rxroute preflight`` and the admin's health checks: one :class:`Check`.

Each check says what it looked at, whether that is ok, worth a warning or a failure, and what
to fix; the live platform checks (:mod:`.live`), the checks of rxroute's own settings and
data (:mod:`.local`) and the admin's per-row checks (:mod:`rxroute.admin.health`) all speak
it, so the CLI and the pages show them alike.
"""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass
from typing import Any

from rxroute.channels.erx.errors import ErxError, RejectedError
from rxroute.config import Settings

#: The platform's signing PIN: 6 digits.
SIGNING_PIN = re.compile(r"^[0-9]{6}$")


class Outcome(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Outcome
    message: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not Outcome.FAIL

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def ok(name: str, message: str) -> Check:
    return Check(name, Outcome.OK, message)


def warn(name: str, message: str, fix: str | None = None) -> Check:
    return Check(name, Outcome.WARN, message, fix)


def fail(name: str, message: str, fix: str) -> Check:
    return Check(name, Outcome.FAIL, message, fix)


def passed(checks: list[Check]) -> bool:
    return all(check.ok for check in checks)


def platform_error(exc: ErxError) -> str:
    if isinstance(exc, RejectedError):
        message = exc.platform_message or "no message"
        return f"the platform refused: {message!r}"
    return f"the platform could not be reached or answered oddly ({exc})"


def erx_regions(settings: Settings) -> list[str]:
    """The regions that send through the platform: the ones the checks concern."""
    return sorted(r for r, channel in settings.region_channels.items() if channel == "erx")
