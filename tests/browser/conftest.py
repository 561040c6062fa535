"""The whole stack on 127.0.0.1 for Playwright: rxroute, a worker, the sandbox, a mail catcher.

Everything runs in the test process so it shares the test database and runtime: rxroute
under uvicorn and a procrastinate worker as tasks on the session's event loop; the provider
sandbox and the mail catcher on their own threads (as ``rxroute demo`` runs them). Chromium is
Debian's (``/usr/bin/chromium``), driven headless through Playwright's async API; the tests
are skipped, saying why, when it is not installed.

Screenshots go to ``test-artifacts/screenshots/``. With ``RXROUTE_DOCS_SCREENSHOTS=1`` the
key ones are also copied to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from rxroute.channels.erx.signaturerx import SignatureRxClient
from rxroute.jobs import queue
from rxroute.mailcatcher import MailCatcher
from rxroute.models import Patient, Prescription
from rxroute.netutil import tcp_listener
from rxroute.runtime import Runtime
from rxroute.sandbox import SandboxServer, load_config
from rxroute.seed import data
from rxroute.seed.service import seed_demo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1000, "height": 700}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists():
                item.add_marker(
                    pytest.mark.skip(
                        reason="Debian's Chromium is not installed at /usr/bin/chromium "
                        "(apt-get install chromium; scripts/test does it in CI)"
                    )
                )


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Shots:
    """Numbered screenshots of one test; ``key`` ones are copied to the README's folder."""

    prefix: str
    taken: list[Path] = field(default_factory=list)

    async def take(
        self, page: Any, name: str, *, key: str | None = None, top: str | None = None
    ) -> Path:
        """Screenshot the viewport, scrolled so the ``top`` selector starts it if given."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if top is not None:
            await page.locator(top).first.evaluate("el => el.scrollIntoView({block: 'start'})")
        path = ARTIFACTS / f"{self.prefix}-{len(self.taken) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path))
        self.taken.append(path)
        if key and os.environ.get("RXROUTE_DOCS_SCREENSHOTS") == "1":
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS / f"{key}.png")
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name.removeprefix("test_").replace("[", "-").rstrip("]"))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Ctrl-C belongs to pytest, not to the server under test.
        yield


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Stack:
    url: str
    runtime: Runtime
    sandbox: SandboxServer
    mail: MailCatcher

    async def draft(self, region: str) -> uuid.UUID:
        """One of the demo patient's unsent prescriptions preset for ``region``."""
        async with self.runtime.sessionmaker() as session:
            found = await session.scalar(
                select(Prescription.id)
                .join(Patient, Patient.id == Prescription.patient_id)
                .where(
                    Patient.email == data.DEMO_PATIENT_EMAIL,
                    Prescription.region == region,
                    Prescription.status == "draft",
                )
                .order_by(Prescription.created_at, Prescription.id)
                .limit(1)
            )
        assert found is not None, f"no Region {region} draft in the demo data"
        return found

    async def prescription(self, prescription_id: uuid.UUID) -> Prescription:
        async with self.runtime.sessionmaker() as session:
            found = await session.get(Prescription, prescription_id)
        assert found is not None
        return found


@pytest.fixture
async def stack(db: Runtime) -> AsyncIterator[Stack]:
    async with db.sessionmaker() as session, session.begin():
        await seed_demo(session, db.secret_box)

    app_socket = tcp_listener("127.0.0.1", 0)
    url = f"http://127.0.0.1:{app_socket.getsockname()[1]}"

    sandbox_port = _free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    config = load_config(None).with_overrides(
        webhook_url=f"{url}/webhooks/erx", sign_delay_seconds=0.5
    )
    config = config.model_copy(update={"public_url": sandbox_url})
    sandbox = SandboxServer(config, host="127.0.0.1", port=sandbox_port)
    mail = MailCatcher(host="127.0.0.1", smtp_port=0, web_port=0)
    await asyncio.to_thread(sandbox.start)
    await asyncio.to_thread(mail.start)

    saved_settings, saved_services = db.settings, dict(db.services)
    settings = db.settings.model_copy(
        update={
            "public_url": url,
            "erx_base_url": sandbox_url,
            "erx_clinic_id": data.CLINIC_INTERNAL_ID,
            "erx_send_backoff_seconds": 0.2,
            "smtp_host": "127.0.0.1",
            "smtp_port": mail.smtp_port,
        }
    )
    db.settings = settings
    client = SignatureRxClient(settings)
    db.services["erx"] = client

    from rxroute.app import create_app

    server = _Server(
        uvicorn.Config(create_app(settings), log_config=None, access_log=False, lifespan="on")
    )
    serving = asyncio.create_task(server.serve(sockets=[app_socket]))
    worker = asyncio.create_task(
        queue.run_worker_async(
            concurrency=2,
            install_signal_handlers=False,
            fetch_job_polling_interval=0.5,
            shutdown_graceful_timeout=2,
        )
    )
    for _ in range(500):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "rxroute did not start"
    try:
        yield Stack(url=url, runtime=db, sandbox=sandbox, mail=mail)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(serving, 10)
        app_socket.close()
        await client.aclose()
        db.settings = saved_settings
        db.services.clear()
        db.services.update(saved_services)
        await asyncio.to_thread(mail.stop)
        await asyncio.to_thread(sandbox.stop)
