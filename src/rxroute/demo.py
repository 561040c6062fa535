"""``rxroute demo``: the whole product on 127.0.0.1 from one command.

One process tree: the embedded database, migrations, seeded data, the web app and a worker.
Ctrl-C stops everything in order (app, worker, database handle).
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from rxroute.cli import console, ensure_port_free, load_settings, print_logins, run_worker
from rxroute.config import Settings
from rxroute.db import migrate
from rxroute.db.engine import resolve_database_url
from rxroute.logging import configure_logging
from rxroute.seed import data


async def _run(settings: Settings, url: str, host: str, port: int) -> None:
    from rxroute.app import create_app
    from rxroute.runtime import start_runtime, stop_runtime
    from rxroute.seed.service import seed_demo

    await asyncio.to_thread(migrate.upgrade, url)
    runtime = await start_runtime(settings, url)
    try:
        async with runtime.sessionmaker() as session, session.begin():
            summary = await seed_demo(session, runtime.secret_box)
        console.print("seeded demo data" if summary.created else "demo data already present")
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host=host, port=port, log_config=None)
        )
        worker = asyncio.create_task(run_worker(2, install_signal_handlers=False))
        print_logins(f"http://{host}:{port}")
        console.print("Press Ctrl-C to stop.")
        try:
            await server.serve()
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
    finally:
        await stop_runtime()


def run_demo(*, host: str = "127.0.0.1", port: int = 8000) -> None:
    settings = load_settings(
        public_url=f"http://{host}:{port}",
        erx_clinic_id=data.CLINIC_INTERNAL_ID,
    )
    ensure_port_free(host, port, "rxroute")
    configure_logging("WARNING", json=settings.log_json)
    url = resolve_database_url(settings)
    asyncio.run(_run(settings, url, host, port))
    console.print("demo stopped")
