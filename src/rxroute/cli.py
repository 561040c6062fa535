"""The ``rxroute`` command: migrate, seed, serve, worker, demo, sandbox, preflight, apikey.

Every command turns a configuration or environment problem into one line on stderr naming
what to fix, and a non-zero exit status; never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rxroute.cli_support import (
    CliError,
    console,
    ensure_port_free,
    friendly_errors,
    load_settings,
    require_encryption_keys,
)
from rxroute.seed.data import MAX_PATIENT_DRAFTS, PATIENT_DRAFTS_DEFAULT

if TYPE_CHECKING:
    from rxroute.config import Settings

app = typer.Typer(
    name="rxroute",
    help="Route prescriptions to pharmacies by region, and track them until dispensed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def resolve_database_url(settings: Settings) -> str:
    """:func:`rxroute.db.engine.resolve_database_url`, imported when a command runs (the
    database layer is not needed to print ``--help``)."""
    from rxroute.db.engine import resolve_database_url as resolve

    return resolve(settings)


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda advance: progress.advance(task, advance)


def print_logins(url: str | None = None) -> None:
    from rxroute.seed import data

    if url:
        console.print(f"\n[bold]rxroute is running at[/] {url}")
    console.print("[bold]Demo logins[/] (password for all: [cyan]rxroute-demo[/]):")
    for email, role in (
        (data.DEMO_PATIENT_EMAIL, "patient"),
        (data.DEMO_SUPPORT_EMAIL, "support"),
        (data.DEMO_ADMIN_EMAIL, "admin"),
        (data.DEMO_PRESCRIBER_EMAIL, "prescriber"),
    ):
        console.print(f"  {email:<22} {role}")


#: ``--wait-for-db``, the same for every command that needs the database from the start.
WaitForDb = Annotated[
    float,
    typer.Option(
        "--wait-for-db",
        min=0,
        max=3600,
        metavar="SECONDS",
        help="Wait up to this long for the database to accept connections, retrying with "
        "backoff (one line per retry); 0 fails at once.",
    ),
]


def database_url_when_ready(settings: Settings, wait_seconds: float) -> str:
    """The database URL, once the server accepts connections (waiting up to the bound)."""
    from rxroute.db.wait import wait_for_database

    url = resolve_database_url(settings)
    wait_for_database(url, wait_seconds)
    return url


# --- commands ------------------------------------------------------------------------------


@app.command()
@friendly_errors
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    downgrade: Annotated[
        bool, typer.Option("--downgrade", help="Downgrade to --revision instead.")
    ] = False,
    wait_for_db: WaitForDb = 0,
) -> None:
    """Bring the database schema (rxroute's tables and the job queue) up to date."""
    from rxroute.db import migrate as migrations

    settings = load_settings()
    url = database_url_when_ready(settings, wait_for_db)
    if downgrade:
        target = "base" if revision == "head" else revision
        migrations.downgrade(url, target)
    else:
        migrations.upgrade(url, revision)
    console.print(f"database at revision {migrations.current_revision(url)}")


async def _seed(
    settings: Settings, url: str, prescriptions: int, patient_email: str | None = None
) -> None:
    from rxroute.db import migrate as migrations
    from rxroute.runtime import start_runtime, stop_runtime
    from rxroute.seed.service import (
        add_patient_drafts,
        add_prescriptions,
        find_patient,
        seed_demo,
    )

    await asyncio.to_thread(migrations.upgrade, url)
    runtime = await start_runtime(settings, url)
    try:
        async with runtime.sessionmaker() as session, session.begin():
            summary = await seed_demo(session, runtime.secret_box)
        if summary.created:
            console.print(
                f"seeded {summary.pharmacies} pharmacies, {summary.patients} patients, "
                f"{summary.prescriptions} prescriptions"
            )
        else:
            console.print("demo data already present")
        if patient_email is not None:
            async with runtime.sessionmaker() as session, session.begin():
                patient = await find_patient(session, patient_email, field="--patient")
                added = await add_patient_drafts(session, patient, prescriptions)
            console.print(f"added {added} fresh draft prescriptions for patient {patient.id}")
        elif prescriptions:
            with progress_bar("adding prescriptions", prescriptions) as advance:
                async with runtime.sessionmaker() as session, session.begin():
                    added = await add_prescriptions(session, prescriptions, progress=advance)
            console.print(f"added {added} fresh draft prescriptions")
    finally:
        await stop_runtime()


@app.command()
@friendly_errors
def seed(
    prescriptions: Annotated[
        int,
        typer.Option(
            "--prescriptions",
            "-n",
            min=0,
            max=1_000_000,
            help="Also bulk-add this many fresh draft prescriptions (spread over the seeded "
            f"patients; with --patient, theirs: 1 to {MAX_PATIENT_DRAFTS}, default "
            f"{PATIENT_DRAFTS_DEFAULT}).",
        ),
    ] = 0,
    patient: Annotated[
        str | None,
        typer.Option(
            "--patient",
            metavar="EMAIL",
            help="Give the new drafts to the patient who signs in with this email, e.g. "
            "patient@example.com, instead of spreading them.",
        ),
    ] = None,
) -> None:
    """Create the deterministic synthetic demo data (idempotent), and optionally more."""
    if patient is not None:
        prescriptions = prescriptions or PATIENT_DRAFTS_DEFAULT
        if prescriptions > MAX_PATIENT_DRAFTS:
            raise CliError(
                f"--prescriptions: at most {MAX_PATIENT_DRAFTS} drafts for one patient "
                "(without --patient, -n spreads any number over the seeded patients)"
            )
    settings = load_settings()
    require_encryption_keys(settings)
    url = resolve_database_url(settings)
    try:
        asyncio.run(_seed(settings, url, prescriptions, patient))
    except LookupError as exc:
        raise CliError(str(exc)) from exc
    print_logins()


@app.command()
@friendly_errors
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: RXROUTE_HOST].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on [default: RXROUTE_PORT]."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Web processes sharing the port.")
    ] = 1,
    wait_for_db: WaitForDb = 0,
) -> None:
    """Run the web app and API."""
    import uvicorn

    from rxroute.logging import configure_logging

    settings = load_settings()
    require_encryption_keys(settings)
    host = host or settings.host
    port = port or settings.port
    ensure_port_free(host, port, "rxroute")
    configure_logging(settings.log_level, json=settings.log_json)
    # Fail fast (or wait, bounded) before uvicorn starts, on a bad or absent database.
    database_url_when_ready(settings, wait_for_db)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes: each writes its metrics to files here and /metrics, answered
        # by any of them, adds them up (prometheus-client's multi-process mode). Set before
        # the processes start, which is when they read it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="rxroute-metrics-")
    # Each process builds its own app from the environment (the settings above are read
    # from it too), so one or many processes run the same code path.
    uvicorn.run(
        "rxroute.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
    )


async def _worker(
    settings: Settings, url: str, concurrency: int, metrics_at: tuple[str, int] | None
) -> None:
    from rxroute.heap import settle_heap
    from rxroute.job_worker import import_tasks, run_worker
    from rxroute.observability.worker_server import serving_worker_metrics
    from rxroute.runtime import start_runtime, stop_runtime

    await start_runtime(settings, url)
    # Started, every task module imported: what exists now lives as long as the process
    # (rxroute.heap). Settled before the task modules, the worker left their 68,000 objects
    # to every full collection: a 50 ms stall of every job in flight, each few seconds.
    import_tasks()
    settle_heap()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if metrics_at is not None:
                await stack.enter_async_context(serving_worker_metrics(settings, *metrics_at))
            # Reconnects with backoff through database outages; returns on SIGINT/SIGTERM.
            await run_worker(settings, concurrency)
    finally:
        await stop_runtime()


@app.command()
@friendly_errors
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=64, help="Jobs run at once (default from settings).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Serve /metrics and /healthz on this port (off by default)."
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address for --metrics-port (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    wait_for_db: WaitForDb = 0,
) -> None:
    """Run background jobs (sending, webhook processing, reconciliation). Scale out freely."""
    from rxroute.logging import configure_logging
    from rxroute.observability.setup import start_observability

    settings = load_settings()
    require_encryption_keys(settings)
    configure_logging(settings.log_level, json=settings.log_json)
    start_observability(settings)
    url = database_url_when_ready(settings, wait_for_db)
    metrics_at = None
    if metrics_port is not None:
        ensure_port_free(metrics_host, metrics_port, "the worker's metrics", "--metrics-port")
        metrics_at = (metrics_host, metrics_port)
    asyncio.run(_worker(settings, url, concurrency or settings.worker_concurrency, metrics_at))


async def _preflight(settings: Settings, url: str) -> list[Any]:
    from rxroute.channels.erx.signaturerx import SignatureRxClient
    from rxroute.preflight import run_preflight
    from rxroute.runtime import start_runtime, stop_runtime

    runtime = await start_runtime(settings, url)
    try:
        async with SignatureRxClient(settings) as client, runtime.sessionmaker() as session:
            return await run_preflight(session, settings, runtime.secret_box, client)
    finally:
        await stop_runtime()


@app.command()
@friendly_errors
def preflight(
    json_output: bool = typer.Option(False, "--json", help="Print the checks as a JSON list."),
) -> None:
    """Check everything the first Region B send needs, against the live platform."""
    import json

    from rich.markup import escape

    from rxroute.logging import configure_logging
    from rxroute.preflight.checks import Outcome, passed

    settings = load_settings()
    require_encryption_keys(settings)
    configure_logging("WARNING", json=settings.log_json)
    url = resolve_database_url(settings)
    checks = asyncio.run(_preflight(settings, url))
    if json_output:
        typer.echo(json.dumps([check.as_dict() for check in checks], indent=2))
    else:
        marks = {
            Outcome.OK: "[green]✓[/]",
            Outcome.WARN: "[yellow]![/]",
            Outcome.FAIL: "[bold red]✗[/]",
        }
        for check in checks:
            console.print(
                f"{marks[check.status]} {escape(check.name)}: {escape(check.message)}",
                highlight=False,
                soft_wrap=True,
                markup=True,
            )
            if check.fix and check.status is not Outcome.OK:
                console.print(f"    fix: {escape(check.fix)}", highlight=False, soft_wrap=True)
    if not passed(checks):
        raise typer.Exit(1)


@app.command()
@friendly_errors
def demo(
    host: Annotated[str, typer.Option(help="Address for every demo service.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="rxroute's port.")] = 8000,
    smtp_port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            help="The mail catcher's SMTP port. Region A sends there unless "
            "RXROUTE_SMTP_HOST/RXROUTE_SMTP_PORT are set in the environment.",
        ),
    ] = 8025,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Start from clean data: drop and recreate the embedded demo database under "
            "./var and forget the sandbox's prescriptions, then migrate and seed.",
        ),
    ] = False,
) -> None:
    """Everything on this machine: database, app, worker, seeded data. Ctrl-C stops it all."""
    from rxroute.demo import run_demo

    run_demo(host=host, port=port, smtp_port=smtp_port, reset=reset)


def _register_service_commands() -> None:
    from rxroute.apiclients.cli import app as apikey_app
    from rxroute.sandbox.cli import sandbox_command

    app.command("sandbox", help="Run the e-prescription platform simulator (Region B).")(
        sandbox_command
    )
    app.add_typer(apikey_app)

    @app.command("mailcatcher")
    def mailcatcher(
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        smtp_port: Annotated[int, typer.Option(min=1, max=65535)] = 8025,
        web_port: Annotated[int, typer.Option(min=1, max=65535)] = 8026,
    ) -> None:
        """A local SMTP server that keeps every email and shows it on a web page."""
        from rxroute.mailcatcher import run_mailcatcher

        run_mailcatcher(host, smtp_port, web_port)


_register_service_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
