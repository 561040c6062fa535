from __future__ import annotations

from pathlib import Path

from rxroute.config import Settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def test_every_setting_is_documented_in_env_example() -> None:
    text = ENV_EXAMPLE.read_text()
    lines = text.splitlines()
    for name in Settings.model_fields:
        variable = f"RXROUTE_{name.upper()}="
        index = next((i for i, line in enumerate(lines) if variable in line), None)
        assert index is not None, f"{variable} is missing from .env.example"
        assert lines[index - 1].startswith("# ") and len(lines[index - 1]) > 10, (
            f"{variable} has no explanation line above it"
        )
