"""Taking a connection off a listener, for both backends, at the least cost per connection.

A connection is a bare ``_socket.socket``, the C type under ``socket.socket``: the Python
layer of ``socket.socket`` (its ``__init__``, ``close`` and the enum conversions of
``accept()``) costs about a microsecond per connection and gives a served connection
nothing it uses. Where a ``socket.socket`` is needed (asyncio's transports take ownership of
one), ``as_socket`` makes it from the same fd.
"""

from __future__ import annotations

import _socket
import logging
import socket
from typing import Final, TypeAlias

logger = logging.getLogger("fcgigw.server")

#: A connection's socket as the servers hold it (a ``socket.socket`` is one too).
ConnectionSocket: TypeAlias = _socket.socket

#: Connections taken per accept readiness at most: nginx opens many at once without
#: keepalive. A threaded worker under a supervisor takes no more than it has threads free to
#: serve them: a connection it cannot serve soon is better left in the backlog for another.
ACCEPT_BATCH: Final = 16

_AF_UNIX: Final = int(socket.AF_UNIX)
_make_socket: Final = _socket.socket


def accept_one(
    listener: socket.socket, family: int, kind: int
) -> tuple[ConnectionSocket, object] | None:
    """A connection waiting on the non-blocking ``listener`` and its peer address; None when
    none is left (or another process took it) or accept failed (logged). ``family`` and
    ``kind`` are the listener's as plain ints. The connection's socket blocks (as
    ``socket.accept()`` gives it); a TCP one gets TCP_NODELAY: responses are written whole,
    and Nagle must not hold the last segment back."""
    try:
        fd, address = listener._accept()  # type: ignore[attr-defined]
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as error:
        logger.error("accept failed on %s: %s", listener.getsockname(), error)
        return None
    sock = _make_socket(family, kind, 0, fd)
    if family != _AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, address


def as_socket(sock: ConnectionSocket) -> socket.socket:
    """A ``socket.socket`` for the connection ``sock`` (which lets go of its fd)."""
    if isinstance(sock, socket.socket):
        return sock
    return socket.socket(sock.family, sock.type, sock.proto, sock.detach())
