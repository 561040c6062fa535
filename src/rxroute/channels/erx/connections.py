"""How many connections to the platform the HTTP client keeps open."""

from __future__ import annotations

import httpx

from rxroute.config import Settings

#: httpx's own defaults, kept as the floor.
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_MAX_KEEPALIVE = 20


def connection_limits(settings: Settings) -> httpx.Limits:
    """Keep alive as many connections as one worker process can use at once.

    That is every job slot plus a reconciliation run's concurrent polls. httpx keeps 20 by
    default, and its pool (httpcore) closes an idle connection whenever it holds more than
    that many connections in all, busy ones included: above 20 calls in flight, answers
    closed connections and the next calls opened new ones (a reconciliation sweep at
    concurrency 32 polled slower than at 16).
    """
    in_flight = settings.worker_concurrency + settings.reconcile_concurrency
    return httpx.Limits(
        max_connections=max(DEFAULT_MAX_CONNECTIONS, in_flight),
        max_keepalive_connections=max(DEFAULT_MAX_KEEPALIVE, in_flight),
    )
