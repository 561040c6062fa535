"""``rxroute demo``: the whole product on 127.0.0.1 from one command.

One process tree: the embedded database, migrations, seeded data (and a fresh API key with
every scope, printed with a curl line to try it), the web app, a worker,
the provider sandbox (Region B), a mail catcher (Region A) and a receiver of rxroute's status
events. rxroute's Region B settings point at the sandbox and the sandbox's webhooks point
back at rxroute; Region A mail goes to the catcher unless ``RXROUTE_SMTP_HOST``/
``RXROUTE_SMTP_PORT`` say otherwise, and events go to the receiver unless
``RXROUTE_EVENTS_URL``/``RXROUTE_EVENTS_SECRET`` do. Ctrl-C stops everything in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncSession

from rxroute.apiclients import service as apiclients
from rxroute.apiclients.scopes import Scope
from rxroute.cli import print_logins
from rxroute.cli_support import CliError, console, ensure_port_free, load_settings
from rxroute.config import Environment, Settings
from rxroute.config_secrets import DEMO_EVENTS_SECRET
from rxroute.db import migrate
from rxroute.db.embedded import DATABASE_NAME, start_embedded
from rxroute.db.engine import resolve_database_url
from rxroute.events.receiver import DEFAULT_EVENTS_PORT, EVENTS_PATH, EventReceiver
from rxroute.job_worker import run_worker
from rxroute.logging import configure_logging
from rxroute.mailcatcher import MailCatcher
from rxroute.mailcatcher.server import DEFAULT_SMTP_PORT, DEFAULT_WEB_PORT
from rxroute.observability.setup import start_observability
from rxroute.sandbox import SandboxServer, load_config
from rxroute.seed import data

#: The demo's own API client: every start gives it a fresh key with every scope.
DEMO_CLIENT_NAME = "demo platform"
#: The sandbox's state file, under ``RXROUTE_VAR_DIR`` (``./var``), beside ``pg/``.
SANDBOX_STATE_FILE = "sandbox-state.json"


def sandbox_state_path(settings: Settings) -> Path:
    return settings.var_dir / SANDBOX_STATE_FILE


def check_reset_allowed(settings: Settings) -> None:
    """``--reset`` deletes data: only the embedded database, and only in development.

    A database named by ``RXROUTE_DATABASE_URL`` may be anyone's (a shared staging server);
    the demo does not drop it, however the flag was typed.
    """
    if settings.environment is not Environment.DEVELOPMENT:
        raise CliError(
            f"--reset deletes the demo's data and runs only in development; "
            f"RXROUTE_ENVIRONMENT is {settings.environment.value}"
        )
    if not settings.uses_embedded_database:
        raise CliError(
            "--reset resets only the embedded demo database under RXROUTE_VAR_DIR, and "
            "RXROUTE_DATABASE_URL is set; unset it, or reset that database yourself "
            "(rxroute migrate --downgrade --revision base, then rxroute migrate)"
        )


def recreate_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` (closing its connections) and create it again, empty.

    Done through the server, not by deleting files, so it works when ``var/pg`` belongs to
    another system user (the embedded server's own, when the demo ran as root).
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def reset_demo_data(settings: Settings) -> None:
    """Both sides of the demo back to clean: rxroute's embedded database and the sandbox's
    state file. Migrations and the seed then run as on every start."""
    check_reset_allowed(settings)
    recreate_database(start_embedded(settings.var_dir, database="postgres"), DATABASE_NAME)
    sandbox_state_path(settings).unlink(missing_ok=True)


async def demo_api_key(session: AsyncSession) -> str:
    """A working key with every scope for :data:`DEMO_CLIENT_NAME`, made or rotated now.

    Only a hash is stored, so the previous run's key cannot be shown again: rotate it. The
    demo client is put back to every scope and, if someone revoked it (trying the admin
    pages), brought back: its revoked key is replaced all the same.
    """
    existing = await apiclients.find_by_name(session, DEMO_CLIENT_NAME)
    if existing is None:
        issued = await apiclients.create_client(session, name=DEMO_CLIENT_NAME, scopes=list(Scope))
        return issued.plain_key
    existing.scopes = [scope.value for scope in Scope]
    existing.revoked_at = None
    return (await apiclients.rotate_client(session, DEMO_CLIENT_NAME)).plain_key


def api_key_lines(key: str, base_url: str) -> list[str]:
    """What the demo prints about its key: the key, and a curl line that uses it."""
    return [
        f"API key ({DEMO_CLIENT_NAME!r}, every scope; a new one each start): {key}",
        f'  try: curl -H "Authorization: Bearer {key}" {base_url}/api/v1/prescriptions',
    ]


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server, which calls ``announce`` once it listens."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:  # not when it could not listen (uvicorn then exits)
            self._announce()


async def _run(
    settings: Settings, url: str, host: str, port: int, announce: Callable[[], None]
) -> None:
    """The app, its worker and the database until stopped; ``announce`` once the app
    listens (so the banner's address answers when it appears)."""
    from rxroute.app import create_app
    from rxroute.runtime import start_runtime, stop_runtime
    from rxroute.seed.service import seed_demo

    await asyncio.to_thread(migrate.upgrade, url)
    runtime = await start_runtime(settings, url)
    try:
        async with runtime.sessionmaker() as session, session.begin():
            summary = await seed_demo(session, runtime.secret_box)
        console.print("seeded demo data" if summary.created else "demo data already present")
        async with runtime.sessionmaker() as session, session.begin():
            key = await demo_api_key(session)
        for line in api_key_lines(key, f"http://{host}:{port}"):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        server = _AnnouncingServer(
            uvicorn.Config(create_app(settings), host=host, port=port, log_config=None),
            announce,
        )
        # Survives database outages by itself (reconnecting with backoff); uvicorn owns the
        # signals, and cancelling the task stops the worker gracefully.
        worker = asyncio.create_task(run_worker(settings, 2, install_signal_handlers=False))

        def worker_stopped(task: asyncio.Task[None]) -> None:
            # Only a bug ends the worker: stop the demo loudly, not silently.
            if not task.cancelled() and task.exception() is not None:
                console.print(f"[bold red]worker stopped:[/] {task.exception()!r}")
                server.should_exit = True

        worker.add_done_callback(worker_stopped)
        try:
            await server.serve()
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
    finally:
        await stop_runtime()


#: Set in the process environment, these send the demo's Region A mail elsewhere.
SMTP_OVERRIDES = ("RXROUTE_SMTP_HOST", "RXROUTE_SMTP_PORT")
#: Set in the process environment, these send (or sign) the demo's events elsewhere.
EVENTS_OVERRIDES = ("RXROUTE_EVENTS_URL", "RXROUTE_EVENTS_SECRET")


def _in_environment(names: tuple[str, ...]) -> set[str]:
    """Which of ``names`` the process environment sets (names match any case, as they do
    for the settings themselves)."""
    present = {name.upper() for name in os.environ}
    return {name for name in names if name in present}


def smtp_overrides_in_environment() -> set[str]:
    return _in_environment(SMTP_OVERRIDES)


def events_overrides_in_environment() -> set[str]:
    return _in_environment(EVENTS_OVERRIDES)


def check_demo_ports(host: str, ports: dict[str, int]) -> None:
    """Refuse two demo services on one port before anything starts, naming both flags."""
    seen: dict[int, str] = {}
    for flag, number in ports.items():
        if number in seen:
            raise CliError(
                f"{seen[number]} and {flag} are both port {number} on {host}; give each demo "
                "service its own port"
            )
        seen[number] = flag


def demo_settings(
    *,
    host: str,
    port: int,
    sandbox_port: int,
    smtp_port: int,
    events_port: int = DEFAULT_EVENTS_PORT,
) -> Settings:
    """rxroute's settings for the demo: Region B at the sandbox, Region A at the catcher,
    events at the demo's receiver.

    ``RXROUTE_SMTP_HOST``/``RXROUTE_SMTP_PORT`` set in the process environment win over the
    mail catcher, so a Region A failure can be staged (a closed port, another server), and
    ``RXROUTE_EVENTS_URL``/``RXROUTE_EVENTS_SECRET`` over the events receiver, so a platform's
    own receiver can be tried. Only the environment counts, not ``.env``: a developer's
    ``.env`` pointing at a real relay or platform must not reach it from the demo.
    """
    overrides: dict[str, Any] = {
        "public_url": f"http://{host}:{port}",
        "erx_base_url": f"http://{host}:{sandbox_port}",
        "erx_clinic_id": data.CLINIC_INTERNAL_ID,
    }
    from_environment = smtp_overrides_in_environment()
    if "RXROUTE_SMTP_HOST" not in from_environment:
        overrides["smtp_host"] = host
    if "RXROUTE_SMTP_PORT" not in from_environment:
        overrides["smtp_port"] = smtp_port
    events_from_environment = events_overrides_in_environment()
    if "RXROUTE_EVENTS_URL" not in events_from_environment:
        overrides["events_url"] = f"http://{host}:{events_port}{EVENTS_PATH}"
    if "RXROUTE_EVENTS_SECRET" not in events_from_environment:
        overrides["events_secret"] = DEMO_EVENTS_SECRET
    return load_settings(**overrides)


def demo_receiver(settings: Settings, host: str, events_port: int) -> EventReceiver | None:
    """The demo's events receiver, verifying with the secret rxroute signs with; None when
    ``RXROUTE_EVENTS_URL`` sends the events elsewhere."""
    if settings.events_url != f"http://{host}:{events_port}{EVENTS_PATH}":
        return None
    return EventReceiver(settings.events_secret.get_secret_value(), host=host, port=events_port)


def run_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    sandbox_port: int = 8100,
    smtp_port: int = DEFAULT_SMTP_PORT,
    mail_web_port: int = DEFAULT_WEB_PORT,
    events_port: int = DEFAULT_EVENTS_PORT,
    reset: bool = False,
) -> None:
    check_demo_ports(
        host,
        {
            "--port": port,
            "the sandbox port": sandbox_port,
            "--smtp-port": smtp_port,
            "the mail catcher web port": mail_web_port,
            "the events receiver port": events_port,
        },
    )
    settings = demo_settings(
        host=host,
        port=port,
        sandbox_port=sandbox_port,
        smtp_port=smtp_port,
        events_port=events_port,
    )
    if reset:
        check_reset_allowed(settings)
    receiver = demo_receiver(settings, host, events_port)
    sandbox_url = f"http://{host}:{sandbox_port}"
    ensure_port_free(host, port, "rxroute")
    ensure_port_free(host, sandbox_port, "sandbox", flag=None)
    ensure_port_free(host, smtp_port, "mail catcher SMTP", flag="--smtp-port")
    ensure_port_free(host, mail_web_port, "mail catcher web", flag=None)
    if receiver is not None:
        ensure_port_free(host, events_port, "events receiver", flag=None)
    configure_logging("WARNING", json=settings.log_json)
    start_observability(settings)
    if reset:
        reset_demo_data(settings)
        console.print("reset: the demo database and the sandbox's state start clean")
    url = resolve_database_url(settings)
    sandbox_config = load_config(None).with_overrides(webhook_url=settings.webhook_url)
    sandbox_config = sandbox_config.model_copy(
        update={"public_url": sandbox_url, "state_file": str(sandbox_state_path(settings))}
    )
    sandbox = SandboxServer(sandbox_config, host=host, port=sandbox_port)
    mail = MailCatcher(host=host, smtp_port=smtp_port, web_port=mail_web_port)
    sandbox.start()
    mail.start()
    if receiver is not None:
        receiver.start()

    def announce() -> None:
        print_logins(f"http://{host}:{port}")
        console.print(f"[bold]Provider sandbox[/]  {sandbox.url}  (portal, mailbox, webhooks)")
        console.print(f"[bold]Mail catcher[/]      {mail.web_url}  (Region A emails)")
        if (settings.smtp_host, settings.smtp_port) != (host, smtp_port):
            console.print(
                f"[bold yellow]Region A SMTP[/]     {settings.smtp_host}:{settings.smtp_port} "
                "(from RXROUTE_SMTP_*), not the mail catcher",
                highlight=False,
            )
        if receiver is not None:
            console.print(f"[bold]Events receiver[/]   {receiver.url}/  (signed status events)")
        else:
            console.print(
                f"[bold yellow]Events out[/]        {settings.events_url} "
                "(from RXROUTE_EVENTS_URL), not the demo's receiver",
                highlight=False,
            )
        console.print("Press Ctrl-C to stop.")

    try:
        asyncio.run(_run(settings, url, host, port, announce))
    finally:
        if receiver is not None:
            receiver.stop()
        mail.stop()
        sandbox.stop()
    console.print("demo stopped")
