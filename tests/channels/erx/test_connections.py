"""The platform client keeps alive every connection one worker process can use at once."""

from __future__ import annotations

from rxroute.channels.erx.connections import DEFAULT_MAX_KEEPALIVE, connection_limits
from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.config import Settings


def _settings(**overrides: object) -> Settings:
    return Settings(erx_clinic_id=994, _env_file=None, **overrides)  # type: ignore[call-arg, arg-type]


def test_job_slots_plus_reconciliation_polls_are_kept_alive() -> None:
    limits = connection_limits(_settings(worker_concurrency=8, reconcile_concurrency=32))
    assert limits.max_keepalive_connections == 40
    assert limits.max_connections is not None and limits.max_connections >= 40


def test_never_fewer_than_httpx_keeps_by_default() -> None:
    limits = connection_limits(_settings(worker_concurrency=1, reconcile_concurrency=1))
    assert limits.max_keepalive_connections == DEFAULT_MAX_KEEPALIVE


async def test_the_client_it_owns_uses_them() -> None:
    settings = _settings(worker_concurrency=8, reconcile_concurrency=32)
    async with SignatureRxClient(settings) as client:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool._max_keepalive_connections == 40


def test_at_the_defaults_every_reconciliation_poll_keeps_its_connection() -> None:
    """The default of 24 polls in flight (docs/performance.md, "Reconciliation at 100,000")
    is above httpx's 20 kept alive: the job slots and the polls are all kept, so a sweep
    does not close a connection per answer and open one per poll."""
    settings = _settings()
    assert settings.reconcile_concurrency == 24
    in_flight = settings.worker_concurrency + settings.reconcile_concurrency
    assert in_flight > DEFAULT_MAX_KEEPALIVE
    assert connection_limits(settings).max_keepalive_connections == in_flight
