"""The worker settles its heap (rxroute.heap) only once every task module is imported.

The task modules are most of what a worker imports (the channels, the ledger, the PDF and
email builders): imported after ``gc.freeze``, their objects stayed in the collector's
generations, and every full collection walked them (about 68,000 objects, 50 ms of a stalled
worker each time, measured under ``bench/bench_send.py``). ``rxroute worker`` is run here up
to its job loop in a fresh interpreter, where nothing imported them yet.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import asyncio, gc, json, sys
from rxroute import cli, heap, job_worker, jobs, runtime
from rxroute.config import Settings

seen = {}
settle = heap.settle_heap

def settle_and_look():
    seen["imported_before"] = [name for name in jobs.TASK_MODULES if name in sys.modules]
    settle()

async def no_runtime(*args, **kwargs):
    return None

async def job_loop(settings, concurrency, **kwargs):
    job_worker.import_tasks()
    gc.collect()
    seen["tracked_in_job_loop"] = len(gc.get_objects())

heap.settle_heap = settle_and_look
runtime.start_runtime = no_runtime
runtime.stop_runtime = no_runtime
job_worker.run_worker = job_loop
asyncio.run(cli._worker(Settings(), "postgresql://unused", 1, None))
print(json.dumps(seen))
"""


def test_the_worker_settles_its_heap_after_importing_every_task_module() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    from rxroute.jobs import TASK_MODULES

    assert seen["imported_before"] == TASK_MODULES
    # What the collector still walks once the jobs run: what start-up left after the freeze
    # (tens of thousands of objects when the task modules came after it).
    assert seen["tracked_in_job_loop"] < 10_000, seen
