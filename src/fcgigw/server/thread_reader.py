"""Reading on a threaded connection: the read turn.

Exactly one thread reads the socket at a time. Whoever needs input and finds the turn free
takes it -- the owner waiting for the next request, an app thread waiting for its body, a
writer whose peer is still sending -- reads once without holding the lock, feeds the core
under the lock, gives the turn back and wakes the others, who find what they waited for in
their request's buffer or take the turn in their own time.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Final

from ..adapters.channel import INPUT_CUT_SHORT, ClientDisconnected
from ..protocol import RecordType
from ..protocol.constants import MAX_CONTENT_LENGTH
from .accept import ConnectionSocket
from .thread_channel import ThreadChannel
from .thread_turns import TurnConnection

#: One read: a whole STDIN record of the biggest kind (lighttpd, h2o send 65535-byte records).
RECV_BYTES: Final = MAX_CONTENT_LENGTH + 1 + 8

_monotonic: Final = time.monotonic
_receive_buffers: Final = threading.local()


def recv_fitted(sock: ConnectionSocket, flags: int = 0) -> bytes:
    """``sock.recv(RECV_BYTES, flags)`` into this thread's reused buffer, copied out to the
    size that came: CPython's own recv allocates 64 KiB and shrinks it on every read, which
    fragments glibc's heaps (the soak's RSS crept ~4 MiB per 100k requests)."""
    view: memoryview | None = getattr(_receive_buffers, "view", None)
    if view is None:
        view = _receive_buffers.view = memoryview(bytearray(RECV_BYTES))
    # Two statements: mypyc (2.4) evaluates a slice's bound twice, which would read twice.
    size = sock.recv_into(view, RECV_BYTES, flags)
    return bytes(view[:size])


class ConnectionReader:
    """The read side of one ThreadedConnection, which it is given on each call."""

    __slots__ = ("reading",)

    def __init__(self) -> None:
        self.reading = False  # the read turn (guarded by the connection's lock)

    def take_turn(self, connection: TurnConnection, *, wait: bool) -> bool:
        """Take the read turn if free; else (``wait``) sleep until the reader hands out."""
        with connection.lock:
            if not self.reading and not connection.closed:
                self.reading = True
                return True
            if wait and not connection.closed:
                connection.wait()
            return False

    def read_holding_turn(self, connection: TurnConnection, *, block: bool) -> bool:
        """Read once and feed the core, then give the turn back; False if ``block`` is off
        and nothing had come."""
        data: bytes | None = None
        failed = False
        try:
            if not block:
                data = recv_fitted(connection.sock, socket.MSG_DONTWAIT)
            elif _wait_readable(connection):
                data = recv_fitted(connection.sock)
        except BlockingIOError:
            pass
        except OSError:
            # A reset, or the socket closed under us: the connection is gone, and it is no
            # EOF (§3.5) to be judged as one ("closed inside a record"); as the asyncio
            # backend's connection_lost does.
            failed = True
        finally:
            with connection.lock:
                self.reading = False
                now = _monotonic()
                if failed:
                    connection.core.lose()
                elif data is not None:
                    connection.core.receive(data, now)
                elif block:
                    connection.core.tick(now)  # the read deadline is over
                waiting = connection.requests_waiting()
                flush = connection.core.has_output
                connection.wake()
        if flush:
            connection.writer.flush(connection)
        if waiting:
            connection.after_read()
        return data is not None or failed or block

    def read_body(
        self, connection: TurnConnection, channel: ThreadChannel, stream: RecordType, size: int
    ) -> bytes:
        """Up to ``size`` bytes of a request's input stream, reading the socket when nobody
        else is; b"" at the stream's end. ClientDisconnected if the request is aborted or
        its connection lost first: what came is not the whole body (§6.2 asks a Responder
        to notice; Apache, Caddy and HAProxy close the connection when their client leaves
        mid-upload), and an app that took the end for the body's would act on a truncated
        one."""
        buffer = channel.inputs[stream]
        while True:
            with connection.lock:
                while True:
                    if len(buffer):
                        return buffer.read(size)
                    if stream in channel.request.ended:
                        return b""
                    if channel.request.aborted:
                        raise ClientDisconnected(INPUT_CUT_SHORT)
                    if not self.reading:
                        self.reading = True
                        break
                    connection.wait()
            self.read_holding_turn(connection, block=True)

    def input_waiting(self, connection: TurnConnection) -> bool:
        """(Under the lock) bytes in the socket that nobody has read yet."""
        return not connection.closed and wait_readable(connection.sock, 0)

    def read_while_writing(self, connection: TurnConnection) -> None:
        """A writer's peer is not reading: take in what it sends, if nobody else reads."""
        if self.take_turn(connection, wait=False):
            self.read_holding_turn(connection, block=False)


def _wait_readable(connection: TurnConnection) -> bool:
    """Block until input comes, or until the core's read deadline (a held END_REQUEST's
    quiet time, a short body's wait for the rest) is over."""
    with connection.lock:
        timeout = connection.core.read_deadline - _monotonic()
    if timeout == float("inf"):
        return True
    return wait_readable(connection.sock, timeout)


def wait_readable(sock: ConnectionSocket, seconds: float) -> bool:
    """True if ``sock`` has input (or its peer's EOF) within ``seconds``. poll(), not
    select(): a busy server's descriptors go past select's FD_SETSIZE (1024)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(max(seconds, 0.0) * 1000))
