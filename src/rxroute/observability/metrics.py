"""Prometheus metrics: one module defines every metric, so names and labels stay consistent.

Names follow Prometheus conventions (``rxroute_..._total`` counters, ``_seconds``
histograms). Labels are bounded sets (route templates, not paths; operation names; outcome
words) and never carry ids or PHI.

Several processes (``rxroute serve --workers N``): set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory shared by them before they start (``rxroute serve`` does so itself when it
forks workers) and ``/metrics`` adds up every process's values, as prometheus-client's
multi-process mode does. The job-queue gauges are read from the database at scrape time
(:func:`queue_gauges`), so they are right whichever process answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST"]

#: Buckets for calls that take milliseconds to tens of seconds (HTTP, platform calls).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUEST_SECONDS = Histogram(
    "rxroute_http_request_seconds",
    "Time to answer an HTTP request, by route template, method and status code.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
SENDS = Counter(
    "rxroute_sends_total",
    "Send attempts by channel and outcome: issued, emailed, retryable, ambiguous (no "
    "answer after sending), rejected (the far side refused) or failed (gave up retrying).",
    ["channel", "outcome"],
)
PLATFORM_REQUEST_SECONDS = Histogram(
    "rxroute_platform_request_seconds",
    "Time of one HTTP request to the Region B platform, by operation and result (the HTTP "
    "status code, or the transport error's name).",
    ["operation", "result"],
    buckets=LATENCY_BUCKETS,
)
PLATFORM_TOKENS = Counter(
    "rxroute_platform_tokens_total",
    "Tokens requested from the platform: access (client credentials) or session (a "
    "prescriber's login).",
    ["kind"],
)
SIGN_INS = Counter(
    "rxroute_sign_ins_total",
    "Sign-in attempts by outcome: ok, refused (wrong email or password) or throttled.",
    ["outcome"],
)
WEBHOOKS = Counter(
    "rxroute_webhooks_total",
    "Platform webhooks received, by outcome (accepted, duplicate, refused) and, for "
    "refusals, the reason code.",
    ["outcome", "reason"],
)
DEAD_LETTERS = Counter(
    "rxroute_dead_letters_total",
    "Inbound webhook events whose processing failed for good (shown in the support console).",
)
RECONCILE_POLLS = Counter(
    "rxroute_reconcile_polls_total",
    "Reconciliation polls of the platform, by outcome (ok or error).",
    ["outcome"],
)
RECONCILE_CORRECTIONS = Counter(
    "rxroute_reconcile_corrections_total",
    "Statuses learned by polling that no webhook had brought: a sign of lost webhooks.",
)
EVENT_DELIVERIES = Counter(
    "rxroute_event_deliveries_total",
    "Status events sent to the integrating platform's endpoints, by outcome (delivered or failed).",
    ["outcome"],
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass(frozen=True)
class QueueDepth:
    """Jobs due to run and not yet taken, for one task."""

    task: str
    waiting: int
    oldest_seconds: float


class _QueueCollector(Collector):
    def __init__(self, depths: Sequence[QueueDepth]) -> None:
        self._depths = depths

    def collect(self) -> Iterable[Metric]:
        waiting = GaugeMetricFamily(
            "rxroute_jobs_waiting", "Jobs due and not yet taken by a worker.", labels=["task"]
        )
        oldest = GaugeMetricFamily(
            "rxroute_job_oldest_waiting_seconds",
            "How long the oldest job that is due has waited for a worker.",
            labels=["task"],
        )
        for depth in self._depths:
            waiting.add_metric([depth.task], depth.waiting)
            oldest.add_metric([depth.task], depth.oldest_seconds)
        yield waiting
        yield oldest


def exposition(depths: Sequence[QueueDepth] = ()) -> bytes:
    """The text a scrape gets: every process's metrics, plus the queue gauges given."""
    registry: CollectorRegistry
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Everything())
    registry.register(_QueueCollector(depths))
    return generate_latest(registry)


class _Everything(Collector):
    """This process's default registry, inside a per-scrape registry with the queue gauges."""

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
