"""Run the sandbox on a real port in a background thread.

Tests and ``rxroute demo`` need a real socket (connection drops and webhooks only behave
truthfully over TCP) without a second process to manage. The server owns its event loop in
its thread: talk to it over HTTP only, never by touching its state from another thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType

import uvicorn

from .app import create_app
from .config import SandboxConfig, load_config


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        # Signals belong to the main thread's owner (pytest, the demo), not to us.
        return None


class SandboxServer:
    """``with SandboxServer() as s: httpx.get(s.url)``; port 0 picks a free port."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.config = config if config is not None else load_config(None)
        self.host = host
        self.port = port
        self.log_level = log_level
        self._server: _ThreadServer | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("SandboxServer is not started")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("SandboxServer already started")
        # Not rxroute.netutil: the sandbox imports nothing from rxroute. Same rule: a TCP
        # protocol socket with TCP_NODELAY, so responses are not held back by Nagle.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            create_app(self.config),
            log_level=self.log_level,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = _ThreadServer(config)
        self._server = server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"rxroute-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("sandbox server failed to start")
            if waited >= timeout:
                raise TimeoutError("sandbox server did not start in time")
            deadline.wait(0.02)
            waited += 0.02

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SandboxServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
