"""Writes rxroute.json, the Grafana dashboard, from the panel list below.

Run ``python deploy/grafana/build_dashboard.py`` after changing a panel; a test checks the
JSON is what this script writes and that every query names only metrics rxroute defines.
"""

from __future__ import annotations

import json
from pathlib import Path

#: (title, unit, [(query, legend)]) per panel, two per row.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Sends by outcome",
        "ops",
        [("sum by (channel, outcome) (rate(rxroute_sends_total[5m]))", "{{channel}} {{outcome}}")],
    ),
    (
        "Send failure ratio",
        "percentunit",
        [
            (
                'sum(rate(rxroute_sends_total{outcome=~"rejected|failed"}[15m])) / '
                'clamp_min(sum(rate(rxroute_sends_total{outcome=~"issued|emailed|rejected|failed"}'
                "[15m])), 1e-9)",
                "failed / finished",
            )
        ],
    ),
    (
        "Oldest waiting job",
        "s",
        [("max by (task) (rxroute_job_oldest_waiting_seconds)", "{{task}}")],
    ),
    ("Jobs waiting", "short", [("sum by (task) (rxroute_jobs_waiting)", "{{task}}")]),
    (
        "Platform latency p95",
        "s",
        [
            (
                "histogram_quantile(0.95, sum by (le, operation) "
                "(rate(rxroute_platform_request_seconds_bucket[5m])))",
                "{{operation}}",
            )
        ],
    ),
    (
        "Platform calls by result",
        "ops",
        [
            (
                "sum by (operation, result) (rate(rxroute_platform_request_seconds_count[5m]))",
                "{{operation}} {{result}}",
            )
        ],
    ),
    (
        "Webhooks by outcome",
        "ops",
        [
            (
                "sum by (outcome, reason) (rate(rxroute_webhooks_total[5m]))",
                "{{outcome}} {{reason}}",
            )
        ],
    ),
    (
        "Dead letters and reconciliation corrections",
        "short",
        [
            ("sum(increase(rxroute_dead_letters_total[1h]))", "dead letters / h"),
            ("sum(increase(rxroute_reconcile_corrections_total[1h]))", "corrections / h"),
        ],
    ),
    (
        "HTTP latency p95 by route",
        "s",
        [
            (
                "histogram_quantile(0.95, sum by (le, route) "
                "(rate(rxroute_http_request_seconds_bucket[5m])))",
                "{{route}}",
            )
        ],
    ),
    (
        "HTTP requests by status",
        "reqps",
        [("sum by (status) (rate(rxroute_http_request_seconds_count[5m]))", "{{status}}")],
    ),
    (
        "Events to the platform",
        "ops",
        [("sum by (outcome) (rate(rxroute_event_deliveries_total[5m]))", "{{outcome}}")],
    ),
    (
        "Platform tokens and sign-ins",
        "ops",
        [
            ("sum by (kind) (rate(rxroute_platform_tokens_total[5m]))", "token {{kind}}"),
            ("sum by (outcome) (rate(rxroute_sign_ins_total[5m]))", "sign-in {{outcome}}"),
        ],
    ),
]


def dashboard() -> dict[str, object]:
    panels = []
    for index, (title, unit, queries) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
                    for n, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "title": "rxroute",
        "uid": "rxroute-overview",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["rxroute"],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": panels,
    }


def rendered() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    Path(__file__).with_name("rxroute.json").write_text(rendered())
