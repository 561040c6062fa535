"""A process killed with SIGKILL right after its status change commits: the event is still
sent (its job was committed with it). Killed right before the commit: nothing is sent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rxroute.events.receiver import EventReceiver
from rxroute.jobs import queue
from rxroute.runtime import Runtime
from tests.events.conftest import (
    add_endpoint,
    all_delivered,
    deliveries,
    events_of,
    job_count,
    run_jobs_until,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _commit_then_die(database_url: str, when: str, folder: Path) -> uuid.UUID:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXROUTE_")}
    env["RXROUTE_DATABASE_URL"] = database_url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "tests.events.commit_then_die", when],
        cwd=folder,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    return uuid.UUID(done.stdout.decode().split()[0])


@pytest.mark.parametrize("when", ["after", "before"])
async def test_killed_around_the_commit(
    fast_retries: Runtime,
    receiver: EventReceiver,
    secret: str,
    database_url: str,
    tmp_path: Path,
    when: str,
) -> None:
    runtime = fast_retries
    async with runtime.sessionmaker() as session, session.begin():
        await add_endpoint(session, runtime, receiver.events_url, secret)
    pid = await asyncio.to_thread(_commit_then_die, database_url, when, tmp_path)
    async with runtime.sessionmaker() as session:
        events = await events_of(session, pid)
    if when == "before":
        assert events == [] and await deliveries(runtime) == []
        assert await job_count(runtime) == 0
        await queue.run_worker_async(
            concurrency=2, wait=False, install_signal_handlers=False, listen_notify=False
        )
        assert receiver.events() == []
        return
    assert [e.type for e in events] == ["prescription.queued"]
    assert await job_count(runtime) == 1
    await run_jobs_until(runtime, lambda: all_delivered(runtime))
    (received,) = receiver.events()
    assert received.message_id == events[0].message_id
    assert received.data["prescription_id"] == str(pid)
