"""Run the catcher: an SMTP listener and its web view, each on its own thread.

Threads rather than the caller's event loop so the same object serves a blocking CLI
command and async tests alike, and so a test's loop never has to host the SMTP server it is
sending to. Port 0 asks the OS for a free port; the real one is read back once bound.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller

from rxroute.mailcatcher.faults import MODES, FailurePlan
from rxroute.mailcatcher.store import DEFAULT_CAPACITY, MessageStore, StoredMessage
from rxroute.mailcatcher.web import create_app
from rxroute.netutil import tcp_listener

__all__ = ["MailCatcher", "run_mailcatcher"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_SMTP_PORT = 8025
DEFAULT_WEB_PORT = 8026
_START_TIMEOUT_SECONDS = 10.0


class _StoreHandler:
    """aiosmtpd handler: keep every message, unless a failure was staged for it."""

    def __init__(self, store: MessageStore, faults: FailurePlan) -> None:
        self._store = store
        self._faults = faults

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        staged = self._faults.take()
        if staged is not None:
            # Answered at the end of DATA, as a relay that refuses a message (or loses it
            # after saying 250) would; nothing is stored either way.
            log.info("mail catcher staged failure: %s", staged)
            return MODES[staged]
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")
        stored = self._store.add(
            data,
            envelope_from=str(envelope.mail_from or ""),
            envelope_to=tuple(str(r) for r in envelope.rcpt_tos),
        )
        # Only the ID is logged: sender, recipients and subject may identify a patient.
        log.info("mail catcher stored message %d", stored.id)
        return "250 Message accepted for delivery"


class _PortReportingController(Controller):
    """aiosmtpd's Controller, taught to learn the port the OS chose for port 0."""

    def _trigger_server(self) -> None:
        server = self.server
        if isinstance(server, asyncio.Server) and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class MailCatcher:
    """SMTP in, web view out, messages in memory; ``start()`` returns once both listen."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        smtp_port: int = DEFAULT_SMTP_PORT,
        web_port: int = DEFAULT_WEB_PORT,
        *,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.host = host
        self._requested_smtp_port = smtp_port
        self._requested_web_port = web_port
        self.store = MessageStore(capacity)
        #: Failures staged for the next messages (``POST /api/faults`` arms them too).
        self.faults = FailurePlan()
        self._controller: _PortReportingController | None = None
        self._web_server: uvicorn.Server | None = None
        self._web_thread: threading.Thread | None = None
        self._web_port: int | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("mail catcher already started")
        controller = _PortReportingController(
            _StoreHandler(self.store, self.faults),
            hostname=self.host,
            port=self._requested_smtp_port,
            ready_timeout=_START_TIMEOUT_SECONDS,
        )
        controller.start()
        self._controller = controller
        try:
            self._start_web()
        except BaseException:
            self.stop()
            raise

    def _start_web(self) -> None:
        sock = tcp_listener(self.host, self._requested_web_port)
        self._web_port = sock.getsockname()[1]
        app = create_app(self.store, smtp_port=self.smtp_port, faults=self.faults)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        self._web_server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="mailcatcher-web", daemon=True
        )
        self._web_thread = thread
        thread.start()
        finished = threading.Event()

        def wait_started() -> None:
            while not server.started and thread.is_alive():
                finished.wait(0.02)

        wait_started_thread = threading.Thread(target=wait_started, daemon=True)
        wait_started_thread.start()
        wait_started_thread.join(_START_TIMEOUT_SECONDS)
        if not server.started:
            raise RuntimeError("mail catcher web view did not start")

    def stop(self) -> None:
        """Idempotent, so a failed start and a test teardown can both call it."""
        if self._web_server is not None:
            self._web_server.should_exit = True
        if self._web_thread is not None:
            self._web_thread.join(_START_TIMEOUT_SECONDS)
        self._web_server = None
        self._web_thread = None
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailCatcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- accessors ----------------------------------------------------------------------

    @property
    def smtp_port(self) -> int:
        if self._controller is None:
            raise RuntimeError("mail catcher not started")
        port: int = self._controller.port
        return port

    @property
    def web_port(self) -> int:
        if self._web_port is None:
            raise RuntimeError("mail catcher not started")
        return self._web_port

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    def messages(self) -> list[StoredMessage]:
        """Received messages, oldest first."""
        return self.store.all()


def run_mailcatcher(
    host: str = DEFAULT_HOST,
    smtp_port: int = DEFAULT_SMTP_PORT,
    web_port: int = DEFAULT_WEB_PORT,
) -> None:
    """Run until Ctrl-C or SIGTERM; for the ``rxroute mailcatcher`` command."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    catcher = MailCatcher(host, smtp_port, web_port)
    catcher.start()
    print(
        f"Mail catcher: SMTP on {host}:{catcher.smtp_port}, web view at {catcher.web_url}/",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        catcher.stop()
        signal.signal(signal.SIGTERM, previous)
