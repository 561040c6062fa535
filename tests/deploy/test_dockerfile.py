"""The image's recipe: what the runtime stage holds and how it runs (no Docker needed)."""

from __future__ import annotations

import json
import re

from tests.deploy import manifests

BASE_IMAGE = "python:3.11-slim-bookworm"


def _stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), per stage."""
    text = manifests.DOCKERFILE.read_text()
    text = re.sub(r"\\\n\s*", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def test_two_stages_on_the_slim_base() -> None:
    stages = _stages()
    assert len(stages) == 2
    for stage in stages:
        assert stage[0][1].startswith(BASE_IMAGE)


def test_builder_installs_the_hashed_lock_and_the_wheel() -> None:
    runs = " ".join(rest for keyword, rest in _stages()[0] if keyword == "RUN")
    assert "--require-hashes" in runs
    assert "-r requirements.lock" in runs
    assert "pip wheel" in runs


def test_runtime_stage_is_minimal_and_non_root() -> None:
    runtime = _stages()[1]
    instructions = dict(runtime)
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in runs
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert copies == ["--from=builder /opt/rxroute /opt/rxroute"]
    assert instructions["USER"] == "10001:10001"
    assert "--uid 10001" in runs
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    assert "/healthz" in instructions["HEALTHCHECK"]
    assert json.loads(instructions["ENTRYPOINT"]) == ["rxroute"]
    assert json.loads(instructions["CMD"]) == ["serve", "--host", "0.0.0.0"]
