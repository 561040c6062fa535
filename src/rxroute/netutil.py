"""Listening sockets for every server rxroute and its sandbox open.

asyncio turns Nagle's algorithm off (``TCP_NODELAY``) on a connection only when its socket
was created with ``proto=IPPROTO_TCP``; a socket made as ``socket(AF_INET, SOCK_STREAM)`` and
handed to uvicorn keeps Nagle on, and every response written in two pieces (headers, then
body) then waits ~40 ms for the client's delayed ACK. That stall capped the benchmarks'
baselines and slowed every sandbox call. Bind here, not in uvicorn, so port 0 resolves to
the real port before the server starts.
"""

from __future__ import annotations

import socket

#: Enough for bursts of connections from benchmarks and several web processes.
BACKLOG = 2048


def tcp_listener(host: str, port: int) -> socket.socket:
    """A bound, listening, non-blocking IPv4 TCP socket with ``TCP_NODELAY`` set.

    Accepted connections get ``TCP_NODELAY`` twice over: Linux copies it from the listener,
    and asyncio sets it because the socket's protocol is ``IPPROTO_TCP``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
