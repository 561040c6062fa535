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
