"""Prescriptions in the order they were issued, so the sandbox's clock pops what is due
instead of walking everything it holds.

Signing and expiry both fall due a fixed time after issue (``Timings``), so one order, by
``issued_at``, serves both, whatever the timings are changed to at run time. The sandbox keeps
one queue of what may still be signed and one of what may still expire; an entry whose
prescription has moved on since is dropped when it comes up, not searched for and removed.

Why: :meth:`Sandbox.tick` runs every 50 ms and before every request. Walking every
prescription took 60 ms at 100,000 held, so a sandbox loaded for a reconciliation benchmark
spent more than its whole time on its clock and answered a few dozen calls a second.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator


class DueQueue:
    """Prescription ids by issue time; :meth:`pop_due` takes those due after ``delay``."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, issued_at: float, prescription_id: str) -> None:
        heapq.heappush(self._heap, (issued_at, prescription_id))

    def pop_due(self, delay: float, now: float) -> Iterator[str]:
        """Remove and yield, oldest first, every id with ``issued_at + delay <= now`` (the
        sum compared as the walk it replaces compared it, so a clock advanced by exactly the
        delay still makes it due)."""
        heap = self._heap
        while heap and heap[0][0] + delay <= now:
            yield heapq.heappop(heap)[1]

    def clear(self) -> None:
        self._heap.clear()
