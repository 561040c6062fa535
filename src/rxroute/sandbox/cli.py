"""Command-line entry points; the lead registers ``sandbox_command`` as ``rxroute sandbox``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 8100,
    config_path: Path | None = None,
    webhook_url: str | None = None,
    state_file: Path | None = None,
    **fault_overrides: Any,
) -> None:
    """Serve the sandbox in the foreground until interrupted.

    ``fault_overrides`` take any ``faults`` or ``timings`` field name (``latency_ms``,
    ``error_rate``, ``sign_delay_seconds``...); None values are ignored so CLI defaults
    do not mask the config file.
    """
    # Imported here: ``rxroute --help`` lists this command without loading the web stack.
    import uvicorn

    from .app import create_app
    from .config import load_config

    config = load_config(config_path).with_overrides(webhook_url=webhook_url, **fault_overrides)
    if state_file is not None:
        config = config.model_copy(update={"state_file": str(state_file)})
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False)


def sandbox_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Sandbox config JSON (accounts, timings, faults).", exists=True
        ),
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="Where to POST status-change webhooks.")
    ] = None,
    latency_ms: Annotated[
        int | None, typer.Option(help="Added latency on every API call, in ms.")
    ] = None,
    error_rate: Annotated[
        float | None, typer.Option(help="Share of API calls answered with a 5xx (0-1).")
    ] = None,
    drop_rate: Annotated[
        float | None,
        typer.Option(help="Share of API calls processed, then left unanswered (0-1)."),
    ] = None,
    access_token_ttl: Annotated[
        int | None, typer.Option(help="OAuth access token lifetime, seconds.")
    ] = None,
    session_token_ttl: Annotated[
        int | None, typer.Option(help="Prescriber session token lifetime, seconds.")
    ] = None,
    webhook_duplicate_rate: Annotated[
        float | None, typer.Option(help="Share of webhook events sent twice (0-1).")
    ] = None,
    webhook_reorder_rate: Annotated[
        float | None, typer.Option(help="Share of webhook events sent after the next (0-1).")
    ] = None,
    webhook_drop_rate: Annotated[
        float | None, typer.Option(help="Share of webhook tries lost, then retried (0-1).")
    ] = None,
    webhook_delay_ms: Annotated[
        int | None, typer.Option(help="Delay before each event's first webhook try, ms.")
    ] = None,
    sign_delay: Annotated[float | None, typer.Option(help="Seconds from issue to signed.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the fault RNG.")] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(
            help="Keep prescriptions and the mailbox in this JSON file across restarts "
            "(default: in memory only).",
        ),
    ] = None,
) -> None:
    """Run the e-prescription platform sandbox (state in memory unless --state-file)."""
    run_sandbox(
        host=host,
        port=port,
        config_path=config,
        webhook_url=webhook_url,
        latency_ms=latency_ms,
        error_rate=error_rate,
        drop_after_processing_rate=drop_rate,
        access_token_ttl_seconds=access_token_ttl,
        session_token_ttl_seconds=session_token_ttl,
        webhook_duplicate_rate=webhook_duplicate_rate,
        webhook_reorder_rate=webhook_reorder_rate,
        webhook_drop_rate=webhook_drop_rate,
        webhook_delay_ms=webhook_delay_ms,
        sign_delay_seconds=sign_delay,
        seed=seed,
        state_file=state_file,
    )
