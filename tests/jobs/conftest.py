"""Real ``rxroute worker`` processes on a scratch database of their own.

The workers run the real CLI command with the test-only jobs of :mod:`tests.jobs.tasks`
registered too, and test-sized stall detection (heartbeat 1 s, stalled after 6 s). The test
itself defers jobs and reads results through a connection named :data:`DRIVER`, which the
outage tests never cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from sqlalchemy.engine import make_url

from rxroute.db import migrate
from tests.conftest import create_test_database, drop_test_database
from tests.jobs.tasks import RUNS_DONE_ONCE, RUNS_TABLE

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = "rxroute-test-driver"
TICK = "tests.jobs.tick"

#: Test-sized stall detection for the worker processes.
WORKER_SETTINGS = {
    "RXROUTE_WORKER_HEARTBEAT_SECONDS": "1",
    "RXROUTE_STALLED_JOB_SECONDS": "6",
    "RXROUTE_PLATFORM_CALL_DEADLINE_SECONDS": "1",
}


@dataclass
class JobsDatabase:
    url: str
    admin_url: str

    @property
    def name(self) -> str:
        return str(make_url(self.url).database)


@pytest.fixture(scope="package")
def jobs_database() -> Iterator[JobsDatabase]:
    url, admin = create_test_database("rxroute_jobs")
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RUNS_TABLE)
        conn.execute(RUNS_DONE_ONCE)
    yield JobsDatabase(url, admin)
    drop_test_database(url, admin)


@dataclass
class Driver:
    """The test's side: defers jobs, reads what the workers did, cuts the database off."""

    database: JobsDatabase
    queue: procrastinate.App
    conn: psycopg.AsyncConnection[dict[str, Any]]

    async def defer(self, key: str, seconds: float = 0.0) -> int:
        job_id: int = await self.queue.configure_task(TICK).defer_async(key=key, seconds=seconds)
        return job_id

    async def rows(self, query: str, **params: Any) -> list[dict[str, Any]]:
        cursor = await self.conn.execute(query, params)  # type: ignore[arg-type]
        return await cursor.fetchall()

    async def terminate_worker_connections(self) -> int:
        """pg_terminate_backend on every connection to the database but the test's own."""
        rows = await self.rows(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name <> %(driver)s",
            driver=DRIVER,
        )
        return int(rows[0]["n"])

    @contextlib.asynccontextmanager
    async def refusing_connections(self) -> AsyncIterator[None]:
        """New connections to the database are refused (and live ones cut) until exit."""
        statement = "ALTER DATABASE {} ALLOW_CONNECTIONS {}"
        async with await psycopg.AsyncConnection.connect(
            self.database.admin_url, autocommit=True
        ) as admin:
            name = sql.Identifier(self.database.name)
            await admin.execute(sql.SQL(statement).format(name, sql.SQL("false")))
            try:
                await self.terminate_worker_connections()
                yield
            finally:
                await admin.execute(sql.SQL(statement).format(name, sql.SQL("true")))


@pytest.fixture
async def driver(jobs_database: JobsDatabase) -> AsyncIterator[Driver]:
    with psycopg.connect(jobs_database.url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE test_job_runs, procrastinate_jobs, procrastinate_events, "
            "procrastinate_periodic_defers RESTART IDENTITY CASCADE"
        )
        conn.execute("DELETE FROM procrastinate_workers")
    queue = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=jobs_database.url, kwargs={"application_name": DRIVER}
        )
    )
    async with await psycopg.AsyncConnection.connect(
        jobs_database.url, autocommit=True, application_name=DRIVER, row_factory=dict_row
    ) as conn:
        await queue.open_async()
        try:
            yield Driver(jobs_database, queue, conn)
        finally:
            await queue.close_async()


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Workers:
    database: JobsDatabase
    folder: Path
    started: list[WorkerProcess] = field(default_factory=list)

    async def start(self, count: int, *, concurrency: int) -> list[WorkerProcess]:
        """``count`` worker processes, returned once every one is registered in the queue."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
        env.update(WORKER_SETTINGS)
        env["RXROUTE_DATABASE_URL"] = self.database.url
        env["RXROUTE_LOG_JSON"] = "true"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        new = []
        for _ in range(count):
            log_path = self.folder / f"worker-{len(self.started)}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.jobs.worker_main",
                        "--concurrency",
                        str(concurrency),
                    ],
                    cwd=self.folder,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            worker = WorkerProcess(process, log_path)
            self.started.append(worker)
            new.append(worker)
        with psycopg.connect(self.database.url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while True:
                registered = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
                if registered is not None and registered[0] >= len(self.started):
                    break
                for worker in new:
                    assert worker.alive(), f"worker exited at start-up:\n{worker.log()}"
                assert time.monotonic() < deadline, "workers did not start within 30 s"
                await asyncio.sleep(0.1)
        return new

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.started:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


@pytest.fixture
def workers(jobs_database: JobsDatabase, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(jobs_database, tmp_path)
    yield running
    running.stop_all()


async def wait_until(predicate: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"gave up after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.1)
