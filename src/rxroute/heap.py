"""Garbage-collector settings for long-running processes (web and worker).

Why: once the app is built, the heap holds over 260,000 long-lived objects the collector
tracks (FastAPI, SQLAlchemy, pydantic, the routes and models). CPython's full (generation 2)
collection walks all of them every few thousand requests: measured in
``bench/bench_webhooks.py``, each took 120 to 140 ms of CPU and stalled every request in
flight, one of the two causes of the webhook receiver's p99 at a paced 200 req/s (the other:
:mod:`rxroute.webhooks.ingest`). :func:`settle_heap` moves what start-up built into the
permanent generation (``gc.freeze``), so later collections walk only what was allocated
since: 3 to 6 ms.

The generation-0 threshold stays CPython's (700): at 10,000, measured in the same bench,
each young collection took 8 to 13 ms instead of under 2, worse for the tail.
"""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Collect once, then freeze everything alive: call after start-up, before serving."""
    gc.collect()
    gc.freeze()
