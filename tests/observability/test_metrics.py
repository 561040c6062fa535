"""Prometheus metrics: what the web tier and a worker expose, and that they move."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.observability.worker_server import serving_worker_metrics
from rxroute.runtime import Runtime
from tests.erx_sandbox import Erx, queue_for_erx, send_until_done
from tests.erx_sandbox import erx as erx  # a fixture
from tests.erx_sandbox import sandbox as sandbox  # a fixture
from tests.factories import make_patient, make_pharmacy, make_prescriber, make_prescription


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_list_every_documented_family(client: httpx.AsyncClient) -> None:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    body = answer.text
    for family in (
        "rxroute_http_request_seconds",
        "rxroute_sends_total",
        "rxroute_platform_request_seconds",
        "rxroute_platform_tokens_total",
        "rxroute_webhooks_total",
        "rxroute_jobs_waiting",
        "rxroute_job_oldest_waiting_seconds",
        "rxroute_dead_letters_total",
        "rxroute_reconcile_corrections_total",
        "rxroute_sign_ins_total",
        "rxroute_event_deliveries_total",
    ):
        assert f"# TYPE {family}" in body, family


async def test_http_requests_are_labelled_by_route_template(client: httpx.AsyncClient) -> None:
    route = "/api/v1/prescriptions/{prescription_id}"
    before = _sample("rxroute_http_request_seconds_count", route=route, method="GET", status="401")
    await client.get(f"/api/v1/prescriptions/{uuid.uuid4()}")
    after = _sample("rxroute_http_request_seconds_count", route=route, method="GET", status="401")
    assert after == before + 1
    metrics = (await client.get("/metrics")).text
    assert "/api/v1/prescriptions/{prescription_id}" in metrics


async def test_refused_webhooks_are_counted_by_reason(client: httpx.AsyncClient) -> None:
    before = _sample("rxroute_webhooks_total", outcome="refused", reason="empty")
    answer = await client.post("/webhooks/erx", content=b"")
    assert answer.status_code == 400
    assert _sample("rxroute_webhooks_total", outcome="refused", reason="empty") == before + 1


async def test_metrics_need_the_token_when_one_is_set(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    settings.metrics_token = SecretStr("scrape-token-for-tests")
    try:
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer scrape-token-for-tests"}
        assert (await client.get("/metrics", headers=right)).status_code == 200
    finally:
        settings.metrics_token = None


async def test_queue_gauges_show_due_jobs_and_their_age(
    client: httpx.AsyncClient, db: Runtime
) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
                "VALUES ('default', 'metrics_probe_task', '{}'), "
                "('default', 'metrics_probe_task', '{}')"
            )
        )
        await connection.execute(
            text(
                "UPDATE procrastinate_events SET at = now() - interval '90 seconds' "
                "WHERE job_id IN (SELECT id FROM procrastinate_jobs "
                "WHERE task_name = 'metrics_probe_task')"
            )
        )
        # Not due yet: not waiting.
        await connection.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, scheduled_at) "
                "VALUES ('default', 'metrics_probe_later', '{}', now() + interval '1 hour')"
            )
        )
    lines = (await client.get("/metrics")).text.splitlines()
    waiting = [line for line in lines if line.startswith("rxroute_jobs_waiting{")]
    assert 'rxroute_jobs_waiting{task="metrics_probe_task"} 2.0' in waiting
    assert not any("metrics_probe_later" in line for line in waiting)
    oldest = next(
        line
        for line in lines
        if line.startswith('rxroute_job_oldest_waiting_seconds{task="metrics_probe_task"}')
    )
    assert 89 <= float(oldest.split()[-1]) < 3600


async def test_a_send_counts_its_outcome_and_platform_calls(
    erx: Erx, session: AsyncSession
) -> None:
    issued = _sample("rxroute_sends_total", channel="erx", outcome="issued")
    rejected = _sample("rxroute_sends_total", channel="erx", outcome="rejected")
    grants = _sample("rxroute_platform_tokens_total", kind="access")
    issue_calls = _sample("rxroute_platform_request_seconds_count", operation="issue", result="200")

    patient = await make_patient(session)
    doctor = await make_prescriber(session, erx.runtime.secret_box)
    good = await make_pharmacy(session, "B", platform_contact_id=5001)
    unknown = await make_pharmacy(session, "B", platform_contact_id=9999)
    first = await make_prescription(session, patient, doctor)
    second = await make_prescription(session, patient, doctor)
    await queue_for_erx(session, first.id, good)
    await queue_for_erx(session, second.id, unknown)
    await session.commit()
    assert [o.result for o in await send_until_done(erx.runtime, first.id)] == ["issued"]
    assert [o.result for o in await send_until_done(erx.runtime, second.id)] == ["failed"]

    assert _sample("rxroute_sends_total", channel="erx", outcome="issued") == issued + 1
    assert _sample("rxroute_sends_total", channel="erx", outcome="rejected") == rejected + 1
    assert _sample("rxroute_platform_tokens_total", kind="access") >= grants + 1
    assert (
        _sample("rxroute_platform_request_seconds_count", operation="issue", result="200")
        >= issue_calls + 2
    )


async def test_a_worker_serves_its_metrics_and_liveness(settings: Settings) -> None:
    async def get(url: str) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.get(url)

    async with serving_worker_metrics(settings, "127.0.0.1", 0) as port:
        assert (await get(f"http://127.0.0.1:{port}/healthz")).json() == {"status": "ok"}
        metrics = await get(f"http://127.0.0.1:{port}/metrics")
    assert metrics.status_code == 200
    assert "# TYPE rxroute_sends_total counter" in metrics.text


_INCREMENT = """
from rxroute.observability.metrics import SENDS
SENDS.labels(channel="erx", outcome="issued").inc({n})
"""

_EXPOSE = """
import sys
from rxroute.observability.metrics import exposition
sys.stdout.write(exposition().decode())
"""


def test_several_processes_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    """``serve --workers N``: each process writes its own file; any of them reports the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (2, 3):
        subprocess.run(
            [sys.executable, "-c", _INCREMENT.format(n=n)], env=env, check=True, timeout=60
        )
    shown = subprocess.run(
        [sys.executable, "-c", _EXPOSE], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    assert 'rxroute_sends_total{channel="erx",outcome="issued"} 5.0' in shown
