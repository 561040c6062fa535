"""The deployment lock and its audit.

``requirements.lock`` pins every runtime dependency (direct and transitive) to one version
with the hashes of its files, so a deployment installs exactly what was reviewed
(``pip install --require-hashes``). These tests keep it in step with ``pyproject.toml``
offline; ``scripts/audit`` checks it against a vulnerability service and must say plainly
when it could not.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
AUDIT = ROOT / "scripts" / "audit"
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Locked:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]
    text: str


def parse_lock(text: str) -> list[Locked]:
    """Entries of a pip requirements file: continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(" ".join(current.split()))
        current = ""
    assert not current.strip(), "the lock ends inside a continued line"
    entries = []
    for entry in logical:
        assert not entry.startswith("-"), f"an option line in the lock: {entry!r}"
        requirement_text, _, options = entry.partition(" --")
        options = "--" + options if options else ""
        requirement = Requirement(requirement_text)
        assert requirement.url is None, f"{requirement.name}: locked by URL"
        pins = list(requirement.specifier)
        assert len(pins) == 1 and pins[0].operator == "==" and "*" not in pins[0].version, (
            f"{requirement.name}: not pinned to one exact version ({requirement.specifier})"
        )
        leftover = HASH.sub("", options).strip()
        assert not leftover, f"{requirement.name}: unexpected option(s) {leftover!r}"
        entries.append(
            Locked(
                name=canonicalize_name(requirement.name),
                version=Version(pins[0].version),
                marker=requirement.marker,
                hashes=tuple(HASH.findall(options)),
                text=entry,
            )
        )
    return entries


@pytest.fixture(scope="module")
def locked() -> list[Locked]:
    return parse_lock(LOCK.read_text(encoding="utf-8"))


def _direct_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_every_entry_is_pinned_and_hashed(locked: list[Locked]) -> None:
    assert len(locked) >= len(_direct_dependencies())
    for entry in locked:
        assert entry.hashes, f"{entry.name} has no --hash=sha256: (pip --require-hashes)"
    # Every physical line that names a package carries its pin; none slipped outside the parse.
    text = LOCK.read_text(encoding="utf-8")
    names = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.MULTILINE)
    assert sorted(canonicalize_name(name) for name in names) == sorted(e.name for e in locked)


def test_one_version_per_package_per_environment(locked: list[Locked]) -> None:
    """A package may appear twice only under different markers (a universal lock)."""
    seen: dict[tuple[str, str], Version] = {}
    for entry in locked:
        key = (entry.name, str(entry.marker))
        assert key not in seen, f"{entry.name} is locked twice for the same environments"
        seen[key] = entry.version


def test_rxroute_itself_is_not_in_the_lock(locked: list[Locked]) -> None:
    assert "rxroute" not in {entry.name for entry in locked}


def test_every_direct_dependency_is_locked_at_a_version_it_allows(
    locked: list[Locked],
) -> None:
    by_name: dict[str, list[Locked]] = {}
    for entry in locked:
        by_name.setdefault(entry.name, []).append(entry)
    problems = []
    for requirement in _direct_dependencies():
        name = canonicalize_name(requirement.name)
        entries = by_name.get(name)
        if not entries:
            problems.append(f"{requirement} is in pyproject.toml but not in the lock")
            continue
        for entry in entries:
            if not requirement.specifier.contains(entry.version, prereleases=True):
                problems.append(f"{requirement} but the lock has {name}=={entry.version}")
    assert not problems, "regenerate requirements.lock (README, Dependencies): " + "; ".join(
        problems
    )


def test_extras_of_direct_dependencies_are_locked(locked: list[Locked]) -> None:
    """``uvicorn[standard]`` must bring uvloop, httptools ... into the lock too."""
    names = {entry.name for entry in locked}
    checked = 0
    for requirement in _direct_dependencies():
        if not requirement.extras:
            continue
        try:
            wanted = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in wanted:
            dependency = Requirement(text)
            if dependency.marker is None:
                continue
            for extra in requirement.extras:
                if dependency.marker.evaluate({"extra": extra}):
                    checked += 1
                    assert canonicalize_name(dependency.name) in names, (
                        f"{requirement.name}[{extra}] needs {dependency.name}, not in the lock"
                    )
    assert checked >= 3  # uvicorn[standard], sqlalchemy[asyncio], psycopg[binary,pool]


def test_the_lock_says_how_it_was_made_and_the_readme_says_the_same() -> None:
    header = LOCK.read_text(encoding="utf-8").splitlines()[:2]
    assert header[0].startswith("# This file was autogenerated by uv")
    command = header[1].removeprefix("#").strip()
    assert "--generate-hashes" in command
    assert "pyproject.toml" in command
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")


def test_a_stale_lock_is_caught() -> None:
    """The checks above see a lock that misses a dependency or pins a refused version."""
    text = LOCK.read_text(encoding="utf-8")
    fastapi_pin = re.search(r"^fastapi==(\S+)", text, re.MULTILINE)
    assert fastapi_pin is not None
    stale = text.replace(f"fastapi=={fastapi_pin.group(1)}", "fastapi==0.1.0")
    entry = next(e for e in parse_lock(stale) if e.name == "fastapi")
    requirement = next(r for r in _direct_dependencies() if r.name == "fastapi")
    assert not requirement.specifier.contains(entry.version)
    unhashed = re.sub(r" \\\n\s+--hash=sha256:[0-9a-f]{64}", "", text)
    assert not any(e.hashes for e in parse_lock(unhashed))


# --- scripts/audit ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _audit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    environment.update(NO_PROXY="127.0.0.1", no_proxy="127.0.0.1", **env)
    return subprocess.run(
        [str(AUDIT), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_audit_unreachable_service_is_exit_3_and_says_nothing_was_audited() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1/query"
    result = _audit(AUDIT_SERVICE="osv", AUDIT_OSV_URL=url)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "not reachable" in result.stdout
    assert "NOTHING was audited" in result.stdout


def test_audit_refuses_an_unknown_service() -> None:
    result = _audit(AUDIT_SERVICE="snyk")
    assert result.returncode == 2
    assert "AUDIT_SERVICE must be pypi or osv" in result.stderr


class _FakeOsv(BaseHTTPRequestHandler):
    """An OSV query endpoint that knows one vulnerability, in ``server.vulnerable``."""

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = query["package"]["name"]
        self.server.queried.append(name)  # type: ignore[attr-defined]
        answer: dict[str, Any] = {}
        if name == self.server.vulnerable:  # type: ignore[attr-defined]
            answer = {
                "vulns": [
                    {
                        "id": "FAKE-2026-0001",
                        "summary": "a test vulnerability",
                        "affected": [
                            {
                                "package": {"name": name, "ecosystem": "PyPI"},
                                "ranges": [
                                    {
                                        "type": "ECOSYSTEM",
                                        "events": [{"introduced": "0"}, {"fixed": "999.0"}],
                                    }
                                ],
                            }
                        ],
                    }
                ]
            }
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def fake_osv() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOsv)
    server.queried = []  # type: ignore[attr-defined]
    server.vulnerable = None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "pip-audit").exists(),
    reason="pip-audit is not in .venv (scripts/audit installs it from PyPI on first use)",
)
def test_audit_runs_pip_audit_on_every_locked_package(
    fake_osv: ThreadingHTTPServer, locked: list[Locked], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{fake_osv.server_address[1]}/v1/query"
    clean = _audit("--cache-dir", str(tmp_path), AUDIT_SERVICE="osv", AUDIT_OSV_URL=url)
    assert clean.returncode == 0, (clean.stdout, clean.stderr)
    assert "No known vulnerabilities found" in clean.stdout + clean.stderr
    # The probe asks once, pip-audit once per locked package this platform installs.
    here = {entry.name for entry in locked if entry.marker is None or entry.marker.evaluate()}
    assert set(fake_osv.queried) >= here  # type: ignore[attr-defined]

    fake_osv.vulnerable = "jinja2"  # type: ignore[attr-defined]
    found = _audit("--cache-dir", str(tmp_path), AUDIT_SERVICE="osv", AUDIT_OSV_URL=url)
    assert found.returncode == 1, (found.stdout, found.stderr)
    assert "FAKE-2026-0001" in found.stdout
    assert "jinja2" in found.stdout
