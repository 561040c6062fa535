"""Real ``rxroute`` processes for tests and benchmarks: workers, web servers, the sandbox.

Each process is the installed ``rxroute`` command with everything it needs in its
environment (no ``.env`` is read: it runs in a scratch folder), logging to a file the test
can read back. Shared by tests/deliveries/test_workers.py (SIGKILLed workers) and the
scale-out harness (tests/scale_out.py, bench/bench_scale_out.py), so there is one way to
start, wait for and kill them. tests/deliveries/conftest.py offers the ``workers`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from rxroute.runtime import Runtime
from rxroute.sandbox import SandboxConfig

RXROUTE = str(Path(sys.executable).parent / "rxroute")
HEARTBEAT_SECONDS = 1
STALLED_SECONDS = 8
DEADLINE_SECONDS = 3
#: What every worker (and web) process gets besides the database and the sandbox's URL.
#: Test-sized stall detection (heartbeat 1 s, stalled after 8 s, platform call deadline 3 s,
#: which the settings' own validation accepts) keeps SIGKILL recovery short.
WORKER_SETTINGS = {
    "RXROUTE_ERX_CLINIC_ID": "994",
    "RXROUTE_ERX_SEND_BACKOFF_SECONDS": "0.05",
    "RXROUTE_ERX_SEND_BACKOFF_CAP_SECONDS": "0.5",
    "RXROUTE_ERX_SEND_MAX_ATTEMPTS": "50",
    "RXROUTE_WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    "RXROUTE_STALLED_JOB_SECONDS": str(STALLED_SECONDS),
    "RXROUTE_PLATFORM_CALL_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
    "RXROUTE_LOG_JSON": "true",
    "RXROUTE_LOG_LEVEL": "WARNING",
    # Patient emails share the email channel's retry policy (50 tries, 0.05 s apart here)
    # and have no relay to reach: their retries would crowd out the sends measured here.
    # They are tested in tests/notifications.
    "RXROUTE_PATIENT_NOTIFICATIONS": "false",
}


def rxroute_env(database_url: str, sandbox_url: str) -> dict[str, str]:
    """The environment of an ``rxroute`` process: ours minus any ``RXROUTE_*``, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env.update(WORKER_SETTINGS)
    env["RXROUTE_DATABASE_URL"] = database_url
    env["RXROUTE_ERX_BASE_URL"] = sandbox_url
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ManagedProcess:
    """One ``rxroute`` subprocess and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    stopped_at: float | None = None
    #: The procrastinate worker id it registered as, when started alone (workers only).
    worker_id: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


#: The name test_workers.py has always used.
WorkerProcess = ManagedProcess


def spawn(args: list[str], env: Mapping[str, str], folder: Path, name: str) -> ManagedProcess:
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [RXROUTE, *args],
            cwd=folder,  # no .env here: the environment is everything
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ManagedProcess(process, log_path)


def stop(processes: list[ManagedProcess], timeout: float = 20) -> None:
    """SIGTERM every live one, then wait (SIGKILL after ``timeout``)."""
    for each in processes:
        if each.alive():
            each.process.send_signal(signal.SIGTERM)
    for each in processes:
        try:
            each.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            each.process.kill()
            each.process.wait()
        if each.stopped_at is None:
            each.stopped_at = time.monotonic()


async def wait_until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"gave up after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.2)


async def scalar(runtime: Runtime, query: str, **params: Any) -> Any:
    async with runtime.engine.connect() as connection:
        return await connection.scalar(text(query), params)


async def wait_for_http(process: ManagedProcess, url: str, what: str, timeout: float = 30) -> None:
    """Until ``url`` answers 200 (the process must stay alive meanwhile)."""

    async def answers() -> bool:
        assert process.alive(), f"{what} exited at start-up:\n{process.log()}"
        try:
            async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
                return (await http.get(url)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(answers, what, timeout)


async def sandbox_stats(sandbox_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30, trust_env=False) as http:
        response = await http.get("/_sandbox/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


@dataclass
class Workers:
    runtime: Runtime
    database_url: str
    folder: Path
    sandbox_url: str = ""
    started: list[ManagedProcess] = field(default_factory=list)

    async def start(self, count: int, *, concurrency: int | None = None) -> list[ManagedProcess]:
        """``count`` ``rxroute worker`` processes, returned once each is registered.

        ``concurrency`` None leaves the worker at its default (``RXROUTE_WORKER_CONCURRENCY``).
        """
        assert self.sandbox_url, "point the workers at a sandbox first"
        env = rxroute_env(self.database_url, self.sandbox_url)
        before = await scalar(
            self.runtime, "SELECT coalesce(max(id), 0) FROM procrastinate_workers"
        )
        args = ["worker"] if concurrency is None else ["worker", "--concurrency", str(concurrency)]
        new = [
            spawn(args, env, self.folder, f"worker-{len(self.started) + index}")
            for index in range(count)
        ]
        self.started.extend(new)

        async def registered() -> bool:
            for worker in new:
                assert worker.alive(), f"worker exited at start-up:\n{worker.log()}"
            rows = await scalar(
                self.runtime,
                "SELECT count(*) FROM procrastinate_workers WHERE id > :before",
                before=before,
            )
            return int(rows) >= count

        await wait_until(registered, "the workers to register", timeout=30)
        if count == 1:
            new[0].worker_id = int(
                await scalar(
                    self.runtime,
                    "SELECT min(id) FROM procrastinate_workers WHERE id > :before",
                    before=before,
                )
            )
        return new

    def kill(self, worker: ManagedProcess) -> None:
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=10)
        worker.stopped_at = time.monotonic()

    def stop_all(self) -> None:
        stop(self.started)

    def tracebacks(self) -> list[str]:
        return [w.log() for w in self.started if "Traceback" in w.log()]


@pytest.fixture
async def workers(db: Runtime, database_url: str, tmp_path: Path) -> AsyncIterator[Workers]:
    # Workers killed by earlier tests are gone; their rows must not count as registered.
    async with db.engine.begin() as connection:
        await connection.execute(text("DELETE FROM procrastinate_workers"))
    running = Workers(db, database_url, tmp_path)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop_all)


def start_sandbox(
    config: SandboxConfig, folder: Path, *, webhook_url: str | None = None
) -> tuple[ManagedProcess, str]:
    """``rxroute sandbox`` in its own process with ``config``; (process, base URL)."""
    if webhook_url is not None:
        config = config.with_overrides(webhook_url=webhook_url)
    config_path = folder / "sandbox.json"
    config_path.write_text(json.dumps(config.model_dump(mode="json", by_alias=True)))
    port = free_port()
    args = ["sandbox", "--config", str(config_path), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    return spawn(args, env, folder, "sandbox"), f"http://127.0.0.1:{port}"


def start_server(env: Mapping[str, str], folder: Path, index: int, port: int) -> ManagedProcess:
    """``rxroute serve`` on ``port`` (from :func:`free_port`) of 127.0.0.1."""
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    return spawn(args, env, folder, f"serve-{index}")
