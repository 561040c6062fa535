"""OpenTelemetry traces: requests, platform calls, SQL, and across the job queue.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set;
the exporter reads the standard ``OTEL_*`` variables (endpoint, headers, service name), so
nothing rxroute-specific is needed. When on:

- every request is a span (FastAPI), with the platform's HTTP calls (httpx) and SQL
  statements (SQLAlchemy, without parameter values) under it;
- a job deferred while a span is active carries its context (W3C ``traceparent``) in its
  arguments, and the job's span continues that trace, so a send is one trace from the
  patient's click to the platform's answer;
- every log line carries ``trace_id`` and ``span_id`` (:func:`add_trace_ids`).

Probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``) make no spans.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from structlog.types import EventDict, WrappedLogger

_EXCLUDED_URLS = "healthz,readyz,metrics"
#: ``provider`` is installed once per process (OpenTelemetry allows one); ``on`` says whether
#: rxroute uses it.
_state: dict[str, Any] = {"provider": None, "on": False}
tracer = trace.get_tracer("rxroute")


def tracing_requested() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracing_on() -> bool:
    return bool(_state["on"])


def configure_tracing(exporter: SpanExporter | None = None) -> bool:
    """Start tracing in this process; ``exporter`` replaces OTLP (for tests). The first
    call's exporter stays: a process has one tracer provider."""
    if tracing_on():
        return True
    if exporter is None and not tracing_requested():
        return False
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    if _state["provider"] is None:
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME", "rxroute")}
            )
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _state["provider"] = provider
    HTTPXClientInstrumentor().instrument(tracer_provider=_state["provider"])
    _state["on"] = True
    return True


def stop_tracing() -> None:
    """Stop making spans from here on (the provider stays installed)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().uninstrument()
    _state["on"] = False


def instrument_app(app: Any) -> None:
    if not tracing_on():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_state["provider"], excluded_urls=_EXCLUDED_URLS
    )


def instrument_engine(engine: Any) -> None:
    """SQL spans for an async engine (statements only: values are bound parameters)."""
    if not tracing_on():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine,
        tracer_provider=_state["provider"],
        enable_commenter=False,
        # Its declared range stops below SQLAlchemy 2.1, whose engine events it hooks are
        # unchanged; tests/observability/test_tracing.py proves the spans still come.
        skip_dep_check=True,
    )


def current_carrier() -> dict[str, str] | None:
    """The active trace as W3C headers, to ride along with a deferred job; None when off."""
    if not tracing_on():
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextlib.contextmanager
def job_span(name: str, carrier: dict[str, str] | None, **attributes: str) -> Iterator[None]:
    """A job's span, continuing the trace that deferred it when there was one."""
    if not tracing_on():
        yield
        return
    context = propagate.extract(carrier) if carrier else None
    with tracer.start_as_current_span(
        name, context=context, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield


def add_trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: the current trace and span ids on every log line."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event_dict["trace_id"] = format(span.trace_id, "032x")
        event_dict["span_id"] = format(span.span_id, "016x")
    return event_dict
