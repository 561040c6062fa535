"""Config loading and the command the lead registers as ``rxroute sandbox``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from pydantic import ValidationError
from typer.testing import CliRunner

from rxroute.sandbox import cli, load_config, reports


def test_packaged_defaults_keep_the_seeded_accounts() -> None:
    config = load_config(None)
    assert config.oauth_clients[0].client_id == "rxroute-demo-client"
    assert {c.id: c.unique_id for c in config.clinics}[994] == "201334"
    assert config.timings.sign_delay_seconds == 1.0
    assert config.faults.access_token_ttl_seconds == 3600
    assert config.faults.session_token_ttl_seconds == 1800
    assert config.timings.webhook_max_attempts == 6


def test_config_file_and_overrides(tmp_path: Path) -> None:
    data = json.loads(load_config(None).model_dump_json(by_alias=True))
    data["faults"]["latency_ms"] = 25
    path = tmp_path / "sandbox.json"
    path.write_text(json.dumps(data))
    config = load_config(path)
    assert config.faults.latency_ms == 25
    changed = config.with_overrides(
        webhook_url="http://127.0.0.1:1/h", error_rate=0.1, latency_ms=None
    )
    assert changed.webhook.url == "http://127.0.0.1:1/h"
    assert changed.faults.error_rate == 0.1 and changed.faults.latency_ms == 25
    with pytest.raises(ValueError, match="unknown sandbox setting"):
        config.with_overrides(no_such_knob=1)
    with pytest.raises(ValidationError):
        config.with_overrides(error_rate=3)


def test_sandbox_command_maps_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs, faults=app.sandbox.faults, webhook=app.sandbox.webhook)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    command = typer.Typer()
    command.command("sandbox")(cli.sandbox_command)
    command.command("noop")(lambda: None)
    result = CliRunner().invoke(
        command,
        [
            "sandbox",
            "--port",
            "8123",
            "--webhook-url",
            "http://127.0.0.1:8000/webhooks/erx",
            "--latency-ms",
            "5",
            "--error-rate",
            "0.2",
            "--drop-rate",
            "0.1",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1"
    assert seen["faults"].latency_ms == 5
    assert seen["faults"].error_rate == 0.2
    assert seen["faults"].drop_after_processing_rate == 0.1
    assert seen["faults"].seed == 3
    assert seen["webhook"].url == "http://127.0.0.1:8000/webhooks/erx"


def test_sandbox_command_state_file_loads_what_was_saved(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--state-file`` reaches the app: a file saved earlier is loaded before serving."""
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "version": 1,
                "clock_offset_seconds": 42.0,
                "prescriptions": [],
                "mailbox": [],
                "issued_by_client_ref_id": {"rx-1": 1},
            }
        ),
        encoding="utf-8",
    )
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(config=app.sandbox.config, stats=reports.stats(app.sandbox))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    command = typer.Typer()
    command.command("sandbox")(cli.sandbox_command)
    command.command("noop")(lambda: None)
    result = CliRunner().invoke(command, ["sandbox", "--state-file", str(state)])
    assert result.exit_code == 0, result.output
    assert seen["config"].state_file == str(state)
    assert seen["stats"]["clock_offset_seconds"] == 42.0
    assert seen["stats"]["issued_by_client_ref_id"] == {"rx-1": 1}
