"""``rxroute serve``: address from RXROUTE_HOST/RXROUTE_PORT (flags win), several processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rxroute.db import migrate
from tests.conftest import create_test_database, drop_test_database
from tests.test_cli import RXROUTE, _one_error_line, _run


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_port_from_the_environment(tmp_path: Path, held_port: int) -> None:
    result = _run(
        ["serve"],
        tmp_path,
        RXROUTE_PORT=str(held_port),
        RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db",
    )
    assert f"127.0.0.1:{held_port} is already in use" in _one_error_line(result)


def test_host_from_the_environment(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: binding it fails, naming the address.
    result = _run(
        ["serve"],
        tmp_path,
        RXROUTE_HOST="192.0.2.1",
        RXROUTE_PORT=str(_free_port()),
        RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db",
    )
    assert "cannot listen on 192.0.2.1:" in _one_error_line(result)


def test_flags_override_the_environment(tmp_path: Path, held_port: int) -> None:
    result = _run(
        ["serve", "--host", "127.0.0.1", "--port", str(held_port)],
        tmp_path,
        RXROUTE_HOST="192.0.2.1",
        RXROUTE_PORT=str(_free_port()),
        RXROUTE_DATABASE_URL="postgresql://x@127.0.0.1:1/db",
    )
    assert f"127.0.0.1:{held_port} is already in use" in _one_error_line(result)


@pytest.fixture
def migrated_database() -> Iterator[str]:
    url, admin = create_test_database("rxroute_serve")
    migrate.upgrade(url)
    yield url
    drop_test_database(url, admin)


def _web_processes(pid: int) -> set[int]:
    """The processes uvicorn started to serve (not multiprocessing's resource tracker)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_text(errors="replace")
            if "multiprocessing.spawn" in cmdline:
                found.add(int(child))
    return found


@pytest.mark.slow
def test_several_worker_processes_serve_one_port(tmp_path: Path, migrated_database: str) -> None:
    if not Path("/proc/self/task").exists():
        pytest.skip("needs Linux's /proc to see the worker processes")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env.update(RXROUTE_DATABASE_URL=migrated_database, RXROUTE_PORT=str(port))
    process = subprocess.Popen(
        [RXROUTE, "serve", "--workers", "2", "--wait-for-db", "10"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready: httpx.Response | None = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200 and len(_web_processes(process.pid)) == 2:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, process.poll()
        assert ready.json()["status"] == "ready"
        workers = _web_processes(process.pid)
        assert len(workers) == 2, workers
        for _ in range(10):
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    # Each process built the app from the environment and started up completely.
    for worker in workers:
        assert f"Started server process [{worker}]" in stderr
    assert stderr.count("Application startup complete") == 2, stderr
