"""The alert rules and the Grafana dashboard: valid PromQL over metrics rxroute defines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

import rxroute.observability.metrics  # noqa: F401  (registers every metric)

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "rxroute.json"
OPERATIONS = ROOT / "docs" / "operations.md"
#: Series Prometheus itself makes.
BUILTIN = {"up"}


def _defined_series() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    # Computed at scrape time from the database, so absent from the registry.
    names.update({"rxroute_jobs_waiting", "rxroute_job_oldest_waiting_seconds"})
    for name in list(names):
        if name.startswith("rxroute_") and not name.endswith(("_bucket", "_count", "_sum")):
            # Counters are collected without their _total suffix; histograms have parts.
            names.update({f"{name}_total", f"{name}_bucket", f"{name}_count", f"{name}_sum"})
    return names


def _selectors(node: Any) -> Iterator[str]:
    """Metric names selected anywhere in a parsed PromQL expression."""
    name = type(node).__name__
    if name == "VectorSelector":
        yield node.name
        return
    for attribute in ("vector_selector", "expr", "lhs", "rhs", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, str | int | float):
            yield from _selectors(child)
    for child in getattr(node, "args", None) or ():
        yield from _selectors(child)


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _check(expr: str) -> None:
    names = set(_selectors(promql_parser.parse(expr)))
    assert names, f"no metric in {expr!r}"
    unknown = names - _defined_series() - BUILTIN
    assert not unknown, f"{expr!r} names metrics rxroute does not define: {unknown}"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_every_alert_is_valid_and_documented(rule: dict[str, Any]) -> None:
    _check(rule["expr"])
    assert rule["labels"]["severity"] in {"page", "ticket"}
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    anchor = annotations["runbook_url"].split("#", 1)[1]
    assert anchor == rule["alert"].lower()
    headings = [
        line.lstrip("# ").strip().lower()
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    ]
    assert anchor in headings, f"docs/operations.md has no '### {rule['alert']}' section"


def test_alerts_cover_what_the_issue_asks_for() -> None:
    exprs = " ".join(rule["expr"] for rule in _rules())
    for metric in (
        "rxroute_sends_total",
        "rxroute_job_oldest_waiting_seconds",
        "rxroute_webhooks_total",
        "rxroute_dead_letters_total",
        "rxroute_reconcile_corrections_total",
        "rxroute_platform_request_seconds_bucket",
    ):
        assert metric in exprs


def test_dashboard_is_what_its_script_writes_and_queries_are_valid() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_dashboard", ROOT / "deploy" / "grafana" / "build_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.rendered(), "run deploy/grafana/build_dashboard.py"
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len(panels) >= 6
    for panel in panels:
        for target in panel["targets"]:
            _check(target["expr"])


def test_a_query_naming_an_unknown_metric_is_caught() -> None:
    with pytest.raises(AssertionError, match="rxroute_sendz_total"):
        _check("sum(rate(rxroute_sendz_total[5m]))")
