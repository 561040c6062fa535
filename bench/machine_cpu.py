"""Where a benchmark's CPU went: each process of the run, PostgreSQL, and the whole machine.

A ratio between two pipelines on a small machine is a contest for its cores. When the
worker, PostgreSQL and the sandbox all run during the worker's window but only a client and
the sandbox run during the raw baseline, the ratio is bounded by how much CPU each side
spends per operation, whatever either side's code does. Printing that split beside the
ratio says which process to look at (and whether the machine had anything left over).
For each named process it also says how long its main thread waited for a CPU while it
could have run (the scheduler's run-queue time): a process bound by its own CPU that still
waits has lost part of its core to the others, which its CPU seconds alone do not show.
Linux only: everything comes from ``/proc``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench_load import process_cpu

_TICK = os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far, None once it is gone."""
    try:
        return sum(process_cpu(pid))
    except (FileNotFoundError, ProcessLookupError):
        return None


def _main_thread_seconds(pid: int) -> tuple[float, float]:
    """(on a CPU, waiting on a run queue) seconds of the process's main thread so far:
    ``/proc/PID/schedstat``; zeros once it is gone."""
    try:
        running, waiting = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    return int(running) / 1e9, int(waiting) / 1e9


def _postgres_pids() -> list[int]:
    """Every PostgreSQL process on this machine (the server, its backends and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _machine_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far; I/O wait counts as idle."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, idle / _TICK


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    named: Mapping[str, float]
    #: (on a CPU, waiting for one) seconds of each named process's main thread.
    main_threads: Mapping[str, tuple[float, float]]
    postgres: Mapping[int, float]
    machine_busy: float


def snapshot(pids: Mapping[str, int]) -> CpuSnapshot:
    """CPU used so far by ``pids`` (by name; this process may be one of them), by every
    PostgreSQL process, and by the machine."""
    named = {
        name: (time.process_time() if pid == os.getpid() else _process_seconds(pid) or 0.0)
        for name, pid in pids.items()
    }
    threads = {name: _main_thread_seconds(pid) for name, pid in pids.items()}
    postgres = {pid: seconds for pid in _postgres_pids() if (seconds := _process_seconds(pid))}
    return CpuSnapshot(time.perf_counter(), named, threads, postgres, _machine_seconds()[0])


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds each process used between two snapshots, and the machine's busy cores."""

    seconds: float
    named: dict[str, float]
    #: (on a CPU, waiting for one) seconds of each named process's main thread.
    main_threads: dict[str, tuple[float, float]]
    machine_busy_cores: float

    def per_operation_ms(self, operations: int) -> dict[str, float]:
        return {name: used * 1000 / operations for name, used in self.named.items()}

    def describe(self, operations: int, unit: str) -> str:
        parts = [f"{name} {ms:.2f}" for name, ms in self.per_operation_ms(operations).items()]
        cores = os.cpu_count() or 1
        return (
            f"CPU ms per {unit}: {', '.join(parts)}; "
            f"machine busy {self.machine_busy_cores:.2f} of {cores} cores"
        )

    def describe_share(self, name: str) -> str:
        """How much of the window ``name``'s main thread ran, and waited for a CPU."""
        running, waiting = (seconds / self.seconds for seconds in self.main_threads[name])
        neither = max(0.0, 1.0 - running - waiting)
        return (
            f"{name}'s main thread: on a CPU {100 * running:.0f}% of the window, waiting "
            f"for one {100 * waiting:.0f}%, blocked or idle {100 * neither:.0f}%"
        )


def split(before: CpuSnapshot, after: CpuSnapshot) -> CpuSplit:
    """What each process used between ``before`` and ``after``. A PostgreSQL backend that
    started in between counts in full; one that ended in between is not counted."""
    named = {name: after.named[name] - before.named.get(name, 0.0) for name in after.named}
    named["PostgreSQL"] = sum(
        seconds - before.postgres.get(pid, 0.0) for pid, seconds in after.postgres.items()
    )
    elapsed = after.at - before.at
    return CpuSplit(
        seconds=elapsed,
        named=named,
        main_threads={
            name: (running - before.main_threads[name][0], waiting - before.main_threads[name][1])
            for name, (running, waiting) in after.main_threads.items()
        },
        machine_busy_cores=(after.machine_busy - before.machine_busy) / elapsed,
    )
