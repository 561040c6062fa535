"""Sign-in throttling, one instance behind both sign-in paths (API token and page form).

Three counters, none of which lets an attacker lock a user out of their correct password:

* per (account, client): a few free failures, then a delay that doubles with each further
  failure (1 s, 2 s, 4 s ... up to 15 minutes). An attacker hammering one account from one
  address slows only that pair: the real user, signing in from elsewhere, is not affected.
* per client address (all accounts): a coarse budget of failures per window, against one
  address spraying guesses across many accounts.
* per account (all clients): when an account collects many failures from many addresses, no
  pair gets free failures any more (each starts doubling from its first failure), so a
  distributed guesser gets about one guess per address per doubling period. A client that
  has not failed is never refused, so the user's first correct try still works.

Failures are keyed by the email as typed (lower-cased), whether or not the account exists,
so the limits reveal nothing about which accounts exist. Each attempt is counted *before*
the slow password check and taken back on success, so a burst of parallel guesses cannot
all slip in before the first failure is recorded.

In memory per process: enough to stop a guesser hammering one process; put a shared limiter
at the edge when running many.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _Pair:
    failures: int = 0
    last: float = 0.0


@dataclass(frozen=True)
class Attempt:
    """One counted attempt: give it back to :meth:`SignInLimiter.succeeded` if it succeeds."""

    account: str
    client: str
    at: float


@dataclass
class SignInLimiter:
    free_failures: int = 3
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 900.0
    #: A pair that has not failed for this long starts afresh; the account window too.
    forget_after_seconds: float = 3600.0
    client_budget: int = 50
    client_window_seconds: float = 900.0
    #: Failures on one account from all clients within ``forget_after_seconds`` after which
    #: no pair gets free failures.
    account_ceiling: int = 30
    max_entries: int = 100_000
    _pairs: dict[tuple[str, str], _Pair] = field(default_factory=dict)
    _clients: dict[str, deque[float]] = field(default_factory=dict)
    _accounts: dict[str, deque[float]] = field(default_factory=dict)

    @staticmethod
    def account_key(email: str) -> str:
        return email.strip().lower()

    def _recent(
        self, table: dict[str, deque[float]], key: str, window: float, now: float
    ) -> deque[float]:
        times = table.setdefault(key, deque())
        while times and now - times[0] > window:
            times.popleft()
        return times

    def _delay(self, failures: int, free: int) -> float:
        """After ``free`` failures (at least one): 1 s, then 2 s, 4 s ... up to the cap."""
        over = failures - max(free, 1)
        if over < 0:
            return 0.0
        return min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** min(over, 40))

    def retry_after(self, email: str, client: str, now: float | None = None) -> int:
        """Whole seconds this client must wait before trying this account again; 0 if it
        may try now."""
        moment = time.monotonic() if now is None else now
        account = self.account_key(email)
        wait = 0.0
        pair = self._pairs.get((account, client))
        if pair is not None and moment - pair.last > self.forget_after_seconds:
            del self._pairs[(account, client)]
            pair = None
        if pair is not None:
            crowded = (
                len(self._recent(self._accounts, account, self.forget_after_seconds, moment))
                >= self.account_ceiling
            )
            free = 0 if crowded else self.free_failures
            wait = max(wait, pair.last + self._delay(pair.failures, free) - moment)
        failures = self._recent(self._clients, client, self.client_window_seconds, moment)
        if len(failures) >= self.client_budget:
            wait = max(wait, failures[0] + self.client_window_seconds - moment)
        return math.ceil(wait) if wait > 0 else 0

    def attempt(self, email: str, client: str, now: float | None = None) -> Attempt:
        """Count an attempt as a failure now; :meth:`succeeded` takes it back."""
        moment = time.monotonic() if now is None else now
        account = self.account_key(email)
        if len(self._pairs) + len(self._clients) + len(self._accounts) > self.max_entries:
            self._prune(moment)
        pair = self._pairs.setdefault((account, client), _Pair())
        pair.failures += 1
        pair.last = moment
        self._recent(self._clients, client, self.client_window_seconds, moment).append(moment)
        self._recent(self._accounts, account, self.forget_after_seconds, moment).append(moment)
        return Attempt(account, client, moment)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: this pair starts afresh, and the attempt is not a failure
        against the client's or the account's count."""
        self._pairs.pop((attempt.account, attempt.client), None)
        for table, key in ((self._clients, attempt.client), (self._accounts, attempt.account)):
            times = table.get(key)
            if times is not None and attempt.at in times:
                times.remove(attempt.at)

    def _prune(self, now: float) -> None:
        """Forget what no longer limits anyone; if still too big, forget everything (memory
        is bounded; an attacker filling it gains a reset, which only makes them wait less)."""
        stale = [
            key for key, pair in self._pairs.items() if now - pair.last > self.forget_after_seconds
        ]
        for key in stale:
            del self._pairs[key]
        for table, window in (
            (self._clients, self.client_window_seconds),
            (self._accounts, self.forget_after_seconds),
        ):
            idle = [name for name, times in table.items() if not times or now - times[-1] > window]
            for name in idle:
                del table[name]
        if len(self._pairs) + len(self._clients) + len(self._accounts) > self.max_entries:
            self.reset()

    def reset(self) -> None:
        self._pairs.clear()
        self._clients.clear()
        self._accounts.clear()


sign_in_limiter = SignInLimiter()
