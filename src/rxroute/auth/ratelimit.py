"""Sign-in rate limiting, shared by the API token endpoint and the sign-in page."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from fastapi import Request


@dataclass
class SignInLimiter:
    """At most ``attempts`` failed sign-ins per key within ``window_seconds``.

    Keyed by client address and by email, in memory per process: enough to stop a password
    guesser hammering one process; put a shared limiter at the edge when running many.
    """

    attempts: int = 5
    window_seconds: float = 300.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and now - failures[0] > self.window_seconds:
            failures.popleft()
        return failures

    def retry_after(self, keys: list[str], now: float | None = None) -> int:
        """Seconds to wait if any key is over the limit, else 0."""
        moment = time.monotonic() if now is None else now
        wait = 0.0
        for key in keys:
            failures = self._recent(key, moment)
            if len(failures) >= self.attempts:
                wait = max(wait, self.window_seconds - (moment - failures[0]))
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, keys: list[str], now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        for key in keys:
            self._recent(key, moment).append(moment)
        if len(self._failures) > 100_000:
            self._failures.clear()

    def reset(self) -> None:
        self._failures.clear()

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


sign_in_limiter = SignInLimiter()


def limiter_keys(request: Request, email: str) -> list[str]:
    client = request.client.host if request.client else "unknown"
    return [f"ip:{client}", f"email:{email.strip().lower()}"]
