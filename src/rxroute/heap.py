"""Garbage-collector settings for long-running processes (web and worker).

Why: once the app is built, the heap holds about a million long-lived objects (FastAPI,
SQLAlchemy, pydantic, the routes and models). CPython's full (generation 2) collection walks
all of them, and it runs every few thousand requests: measured in
``bench/bench_webhooks.py``, one such pause took 130 ms on a loaded machine and stalled every
request in flight, which is what set the webhook receiver's p99 at a paced 200 req/s.
:func:`settle_heap` moves what start-up built into the permanent generation
(``gc.freeze``), so later collections walk only what was allocated since, and raises the
generation-0 threshold so a request's short-lived containers are collected less often (they
are mostly freed by reference counting anyway; the threshold only decides how often the
survivors are scanned).
"""

from __future__ import annotations

import gc

#: Allocations (net of deallocations) of tracked objects between young collections.
#: CPython's default is 700; see the module docstring for why higher.
YOUNG_THRESHOLD = 700


def settle_heap() -> None:
    """Collect once, then freeze everything alive: call after start-up, before serving."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
