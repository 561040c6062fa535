"""Every server socket rxroute and its sandbox open has TCP_NODELAY.

Without it, a response written in two pieces waits ~40 ms for the client's delayed ACK
(see :mod:`rxroute.netutil`). asyncio sets TCP_NODELAY on an accepted connection only when
the listening socket's protocol is ``IPPROTO_TCP``; these tests check exactly that on the
live listeners, and that a connection accepted from :func:`tcp_listener` has the option.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import uvicorn

from rxroute.events.receiver import EventReceiver
from rxroute.mailcatcher.server import MailCatcher
from rxroute.netutil import tcp_listener
from rxroute.sandbox.server import SandboxServer


def _nodelay(sock: Any) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def _listeners(server: uvicorn.Server | None) -> Iterable[Any]:
    assert server is not None and server.servers, "the server is not listening"
    for listening in server.servers:
        yield from listening.sockets


def _assert_no_nagle(server: uvicorn.Server | None) -> None:
    found = list(_listeners(server))
    assert found
    for sock in found:
        assert _nodelay(sock), "Linux copies the listener's TCP_NODELAY to accepted sockets"
        if type(sock).__module__.startswith("uvloop"):
            # uvloop (uvicorn's loop when installed) sets TCP_NODELAY on every TCP
            # connection it makes (TCPTransport.new -> _set_nodelay), whatever the listener.
            continue
        assert sock.proto == socket.IPPROTO_TCP, "asyncio sets TCP_NODELAY only for proto=TCP"


async def test_connections_accepted_from_tcp_listener_have_nodelay() -> None:
    listener = tcp_listener("127.0.0.1", 0)
    accepted: asyncio.Queue[bool] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(_nodelay(writer.get_extra_info("socket")))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=listener)
    async with server:
        port = listener.getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(accepted.get(), 5) is True
        writer.close()


def test_sandbox_listens_without_nagle() -> None:
    with SandboxServer() as sandbox:
        _assert_no_nagle(sandbox._server)


def test_mail_catcher_web_listens_without_nagle() -> None:
    with MailCatcher("127.0.0.1", 0, 0) as catcher:
        _assert_no_nagle(catcher._web_server)


def test_events_receiver_listens_without_nagle() -> None:
    with EventReceiver("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", port=0) as receiver:
        _assert_no_nagle(receiver._server)
