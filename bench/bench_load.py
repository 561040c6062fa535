"""The server, load generator and statement counter of the HTTP benchmarks (bench_webhooks.py,
bench_search.py).

Load comes from separate processes, each with its own httpx client: two busy event loops
sharing one GIL would measure the GIL's switch interval instead of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn

from rxroute.netutil import tcp_listener


@dataclass
class Result:
    name: str
    completed: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the server (in the benchmark's process, on the benchmark's runtime) -----------------------


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    sock = tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = _InLoopServer(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# --- the load generator (its own processes) ---------------------------------------------------


def in_process(pool: ProcessPoolExecutor, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``asyncio.run(func(*args))`` in a load-generator process; await it here.

    Separate processes, not threads: two busy event loops sharing one GIL would measure
    the GIL's switch interval instead of the server.
    """
    return asyncio.get_running_loop().run_in_executor(pool, _run_coroutine, func, *args)


def _run_coroutine(func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return asyncio.run(func(*args))  # type: ignore[arg-type]


async def load(
    url: str,
    warm_url: str,
    requests: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
    max_seconds: float,
    rate: float | None,
    expect: int,
) -> tuple[list[float], int, float, float]:
    """One load process: its own client; closed loop, or open loop at ``rate`` req/s.

    Connections are opened (with requests to ``warm_url``) before the clock starts.
    Returns (latencies in ms, unexpected answers, start, end) with wall-clock times, so the
    parent can add up processes that ran side by side.
    """
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30) as client:
        await asyncio.gather(*(client.post(warm_url) for _ in range(concurrency)))

        async def send(body: bytes, headers: dict[str, str]) -> None:
            nonlocal errors
            sent = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code != expect:
                errors += 1

        started_wall = time.time()
        started = time.perf_counter()
        deadline = started + max_seconds
        if rate is None:
            queue_ = iter(requests)

            async def one_client() -> None:
                for body, headers in queue_:
                    if time.perf_counter() >= deadline:
                        return
                    await send(body, headers)

            await asyncio.gather(*(one_client() for _ in range(concurrency)))
        else:
            tasks = []
            for n, (body, headers) in enumerate(requests):
                due = started + n / rate
                if due >= deadline:
                    break
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(send(body, headers)))
            await asyncio.gather(*tasks)
    return latencies, errors, started_wall, time.time()


async def load_from_processes(
    pool: ProcessPoolExecutor,
    processes: int,
    name: str,
    url: str,
    warm_url: str,
    requests: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
    max_seconds: float,
    rate: float | None = None,
    expect: int = 200,
) -> Result:
    """The load of ``processes`` processes at once, each with its share of requests."""
    shares = [requests[n::processes] for n in range(processes)]
    per_process = max(1, concurrency // processes)
    per_rate = None if rate is None else rate / processes
    parts = await asyncio.gather(
        *(
            in_process(pool, load, url, warm_url, share, per_process, max_seconds, per_rate, expect)
            for share in shares
        )
    )
    latencies = [ms for part in parts for ms in part[0]]
    seconds = max(part[3] for part in parts) - min(part[2] for part in parts)
    return Result(name, len(latencies), seconds, latencies, sum(part[1] for part in parts))


# --- what the server did -------------------------------------------------------------------------


def process_cpu(pid: int) -> tuple[float, float]:
    """CPU time (user, system) another process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


@dataclass
class ServerCost:
    """This process's CPU and garbage-collection pauses over a phase (the server runs here).

    Load-insensitive where wall-clock latency is not: CPU seconds do not grow when someone
    else's job takes the other core. The collector's pauses are timed in CPU too (a pause
    is a stretch of this thread's CPU that stalls every request in flight; on a loaded
    machine its wall time also includes waiting for a core), so they say how much of a tail
    the collector itself can explain.
    """

    cpu_seconds: float = 0.0
    pauses_ms: dict[int, list[float]] | None = None

    def per_request_ms(self, requests: int) -> float:
        return self.cpu_seconds * 1000 / requests if requests else float("nan")

    def describe(self, requests: int) -> str:
        parts = [f"server CPU {self.per_request_ms(requests):.2f} ms/req"]
        for generation, pauses in sorted((self.pauses_ms or {}).items()):
            if pauses:
                parts.append(
                    f"gen{generation} GC x{len(pauses)} (max {max(pauses):.1f} ms, "
                    f"total {sum(pauses):.0f} ms)"
                )
        return ", ".join(parts)


class ServerCostMeter:
    """Measures :class:`ServerCost` between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self._started_cpu = 0.0
        self._gc_started = 0.0
        self._cost = ServerCost()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()
            return
        pauses = self._cost.pauses_ms
        assert pauses is not None
        pauses.setdefault(info["generation"], []).append(
            (time.thread_time() - self._gc_started) * 1000
        )

    def start(self) -> None:
        self._cost = ServerCost(pauses_ms={})
        self._started_cpu = time.process_time()
        gc.callbacks.append(self._on_gc)

    def stop(self) -> ServerCost:
        gc.callbacks.remove(self._on_gc)
        self._cost.cpu_seconds = time.process_time() - self._started_cpu
        return self._cost


class StatementCounter:
    """Counts statements sent by this process: cursor executes, and commits or rollbacks
    of an open transaction.

    Patched onto psycopg's async classes, so it sees the ORM, procrastinate, raw pool
    connections and the pool's own health check (an empty query at each checkout) alike.
    The BEGIN psycopg sends before a transaction's first statement is not counted.
    """

    def __init__(self) -> None:
        self.count = 0
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for cls, name in (
            (psycopg.AsyncCursor, "execute"),
            (psycopg.AsyncConnection, "commit"),
            (psycopg.AsyncConnection, "rollback"),
        ):
            original = getattr(cls, name)
            self._originals.append((cls, name, original))
            setattr(cls, name, self._counted(original))

    def _counted(self, original: Any) -> Any:
        counter = self

        async def counted(target: Any, *args: Any, **kwargs: Any) -> Any:
            # A commit or rollback with no transaction open sends nothing.
            if not isinstance(target, psycopg.AsyncConnection) or (
                target.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            ):
                counter.count += 1
            return await original(target, *args, **kwargs)

        return counted

    def uninstall(self) -> None:
        for cls, name, original in self._originals:
            setattr(cls, name, original)
