"""Staged delivery failures: refuse, or accept and lose, the next N messages.

Region A's failure paths (a relay that refuses for good, one that asks to try later, one that
says 250 and then loses the mail) cannot be shown or tested against a catcher that accepts
everything. A failure is armed through the web API and consumed by the SMTP thread at the
end of DATA, one count per message, in the order armed; the lock is there because those are
two different threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["MODES", "FailureError", "FailurePlan", "StagedFailure", "parse_failure"]

REFUSE_PERMANENT = "refuse_permanent"
REFUSE_TEMPORARY = "refuse_temporary"
DROP = "drop"

#: What each mode answers at the end of DATA. The enhanced status codes (RFC 3463) let a
#: client that reads them tell the two refusals apart as a real relay's would.
MODES: dict[str, str] = {
    REFUSE_PERMANENT: "550 5.2.1 Mailbox unavailable (staged by the mail catcher)",
    REFUSE_TEMPORARY: "451 4.3.0 Try again later (staged by the mail catcher)",
    DROP: "250 Message accepted for delivery",
}
MAX_COUNT = 1000


class FailureError(ValueError):
    """The arming request is wrong; the message names the field and what would be right."""


def parse_failure(payload: Any) -> tuple[str, int]:
    """``{"mode": ..., "count": N}`` as ``(mode, count)``; count defaults to 1."""
    if not isinstance(payload, dict):
        raise FailureError('send a JSON object like {"mode": "refuse_permanent", "count": 1}')
    unknown = sorted(set(payload) - {"mode", "count"})
    if unknown:
        raise FailureError(f"unknown field(s) {', '.join(unknown)}; use mode and count")
    mode = payload.get("mode")
    if mode not in MODES:
        got = "is required" if mode is None else f"{mode!r} is unknown"
        raise FailureError(f"mode {got}; use one of {', '.join(MODES)}")
    count = payload.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise FailureError(f"count must be a whole number from 1 to {MAX_COUNT}")
    return str(mode), count


@dataclass
class StagedFailure:
    id: int
    mode: str
    count: int
    remaining: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mode": self.mode,
            "count": self.count,
            "remaining": self.remaining,
            "reply": MODES[self.mode],
        }


class FailurePlan:
    """The armed failures, oldest first, and a tally of the ones that fired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[StagedFailure] = []
        self._next_id = 1
        self._fired: Counter[str] = Counter()

    def arm(self, mode: str, count: int = 1) -> StagedFailure:
        mode, count = parse_failure({"mode": mode, "count": count})
        with self._lock:
            staged = StagedFailure(id=self._next_id, mode=mode, count=count, remaining=count)
            self._next_id += 1
            self._armed.append(staged)
            return StagedFailure(**vars(staged))

    def take(self) -> str | None:
        """The mode this message meets, using up one count; None delivers it normally."""
        with self._lock:
            if not self._armed:
                return None
            first = self._armed[0]
            first.remaining -= 1
            if first.remaining == 0:
                self._armed.pop(0)
            self._fired[first.mode] += 1
            return first.mode

    def armed(self) -> list[StagedFailure]:
        with self._lock:
            return [StagedFailure(**vars(s)) for s in self._armed]

    def fired(self) -> dict[str, int]:
        with self._lock:
            return dict(self._fired)

    def clear(self) -> int:
        """Disarm everything; returns how many failures were still armed (counting each)."""
        with self._lock:
            cleared = sum(s.remaining for s in self._armed)
            self._armed.clear()
            return cleared
