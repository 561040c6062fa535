"""The process's shared resources: settings, database engine, session factory, job queue.

Built once at start-up (``rxroute serve``, ``worker``, ``demo``, or a test fixture) and
read by request dependencies and jobs. Nothing here is created at import time, so importing
rxroute never touches the network or the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from rxroute.config import Settings
from rxroute.crypto import SecretBox
from rxroute.db.engine import create_engine, create_sessionmaker
from rxroute.jobs import make_pool, queue
from rxroute.observability.sqlcount import install_from_environment
from rxroute.observability.tracing import instrument_engine


@dataclass
class Runtime:
    settings: Settings
    libpq_url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    secret_box: SecretBox
    queue_pool: AsyncConnectionPool
    #: Channel clients and other long-lived collaborators, by name (e.g. "erx").
    services: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        for service in self.services.values():
            closer = getattr(service, "aclose", None)
            if closer is not None:
                await closer()
        await queue.close_async()
        await self.queue_pool.close()
        await self.engine.dispose()


_current: Runtime | None = None


def queue_pool_size(settings: Settings) -> int:
    """Connections of the job queue's pool: one per concurrent job, plus the worker's own
    queries (fetching, finishing, the heartbeat) and the webhook receiver's defers."""
    return max(4, settings.worker_concurrency + 2)


async def start_runtime(settings: Settings, libpq_url: str) -> Runtime:
    global _current
    engine = create_engine(
        libpq_url, pool_size=settings.db_pool_size, pre_ping=settings.db_pool_pre_ping
    )
    instrument_engine(engine)
    install_from_environment(engine)
    pool = make_pool(
        libpq_url,
        max_size=queue_pool_size(settings),
        check=settings.db_pool_pre_ping,
    )
    # procrastinate uses a pool it is given as it is: open it first.
    await pool.open(wait=True, timeout=30)
    await queue.open_async(pool=pool)
    runtime = Runtime(
        settings=settings,
        libpq_url=libpq_url,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        secret_box=SecretBox.from_settings(settings),
        queue_pool=pool,
    )
    _current = runtime
    return runtime


async def stop_runtime() -> None:
    global _current
    if _current is not None:
        await _current.close()
        _current = None


def get_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("rxroute's runtime is not started (start_runtime was not called)")
    return _current
