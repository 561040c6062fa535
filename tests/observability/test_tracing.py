"""Traces: requests, SQL and the job queue in one trace; trace ids in log lines.

Tracing is process-global (one tracer provider per process), so these tests turn it on
with an in-memory exporter and turn rxroute's use of it off again afterwards.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.config import Settings
from rxroute.db.engine import create_engine
from rxroute.logging import log_formatter
from rxroute.observability import tracing
from rxroute.prescriptions.tasks import defer_send, send_prescription
from rxroute.runtime import Runtime
from tests.factories import make_patient, make_prescriber, make_prescription

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    assert tracing.configure_tracing(_EXPORTER)
    _EXPORTER.clear()
    try:
        yield _EXPORTER
    finally:
        tracing.stop_tracing()


def _flushed(exporter: InMemorySpanExporter) -> list[tuple[str, int, int | None]]:
    provider = tracing._state["provider"]
    assert isinstance(provider, TracerProvider)
    provider.force_flush()
    return [
        (span.name, span.context.trace_id, span.parent.span_id if span.parent else None)
        for span in exporter.get_finished_spans()
    ]


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.configure_tracing() is False
    assert tracing.current_carrier() is None


async def test_requests_make_spans_but_probes_do_not(
    spans: InMemorySpanExporter, db: Runtime, settings: Settings
) -> None:
    from rxroute.app import create_app

    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://rxroute.test") as api:
        await api.get("/healthz")
        await api.get("/api/v1/prescriptions")
    names = [name for name, _, _ in _flushed(spans)]
    assert any(name.startswith("GET /api/v1/prescriptions") for name in names), names
    assert not any("healthz" in name for name in names)


async def test_a_send_job_continues_the_trace_that_queued_it(
    spans: InMemorySpanExporter, db: Runtime, session: AsyncSession
) -> None:
    patient = await make_patient(session)
    prescription = await make_prescription(
        session, patient, await make_prescriber(session, db.secret_box)
    )
    with tracing.tracer.start_as_current_span("patient clicks send") as parent:
        await defer_send(session, prescription.id)
    await session.commit()
    async with db.engine.connect() as connection:
        args = await connection.scalar(
            text("SELECT args FROM procrastinate_jobs WHERE task_name = 'send_prescription'")
        )
    assert args["trace_context"]["traceparent"].split("-")[1] == format(
        parent.get_span_context().trace_id, "032x"
    )

    await send_prescription(**args)
    finished = {name: (trace, parent_id) for name, trace, parent_id in _flushed(spans)}
    trace_id, parent_id = finished["send_prescription"]
    assert trace_id == parent.get_span_context().trace_id
    assert parent_id == parent.get_span_context().span_id


async def test_sql_statements_are_spans_without_their_values(
    spans: InMemorySpanExporter, database_url: str
) -> None:
    engine = create_engine(database_url)
    tracing.instrument_engine(engine)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT :marker"), {"marker": "Imogen Examplefield"})
    finally:
        await engine.dispose()
    provider = tracing._state["provider"]
    assert isinstance(provider, TracerProvider)
    provider.force_flush()
    statements = [s for s in spans.get_finished_spans() if s.name.startswith("SELECT")]
    assert statements
    for span in statements:
        assert "Imogen" not in json.dumps(dict(span.attributes or {}))


def test_log_lines_carry_the_trace_id(spans: InMemorySpanExporter) -> None:
    record_handler = logging.Handler()
    lines: list[str] = []
    record_handler.emit = lambda record: lines.append(record_handler.format(record))  # type: ignore[method-assign]
    record_handler.setFormatter(log_formatter(json=True))
    logger = logging.getLogger(f"rxroute.trace-test.{uuid.uuid4().hex}")
    logger.addHandler(record_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    with tracing.tracer.start_as_current_span("work") as span:
        structlog.wrap_logger(
            logger,
            processors=[
                tracing.add_trace_ids,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
        ).info("something_happened")
    (line,) = lines
    assert json.loads(line)["trace_id"] == format(span.get_span_context().trace_id, "032x")
