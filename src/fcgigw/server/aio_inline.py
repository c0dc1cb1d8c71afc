"""Accepting on the asyncio backend, and answering a whole request without a transport.

A new connection from a web server without keep-alive (nginx's default) carries one whole
request in its first read and wants one response and a close. Giving it an event-loop
transport costs more than the request itself (benchmarks/PROFILE.md: ~25 µs per connection
on uvloop, for the fd's registration, the transport's objects and callbacks, and their
teardown). So the server accepts in its own reader callback, as the threaded server does,
reads once, and feeds the connection's FastCGIProtocol through an ``InlineTransport``
whose writes are plain non-blocking sends. The socket is handed to a real transport
(``loop.connect_accepted_socket``, the same protocol) as soon as it needs one: nothing came
with the connection yet, a request is not whole, a send is short, the app is still running
after its task's first step (so that an ABORT_REQUEST or the web server going away is seen
while it runs), or the web server sends another request on a kept connection. Until then a
kept connection, answered, is watched with the loop's ``add_reader``: nginx closes kept
connections after one request when more requests run at once than its ``keepalive``
count, and such a connection then never costs a transport. The protocol cannot tell
the difference; once handed over, the InlineTransport forwards to the real one,
after the bytes it had buffered, so records keep their order.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from .accept import ACCEPT_BATCH, ConnectionSocket, accept_one, as_socket
from .thread_reader import RECV_BYTES

_DONTWAIT: Final = int(socket.MSG_DONTWAIT)

#: While the socket is being handed to a transport, writes beyond this wait (drain).
HANDOVER_BUFFER_BYTES: Final = 64 * 1024

_INLINE: Final = 0
_HANDING_OVER: Final = 1
_HANDED_OVER: Final = 2
_CLOSED: Final = 3


class InlineProtocol(Protocol):
    """What the InlineTransport needs of its protocol (aio_connection.FastCGIProtocol)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def needs_transport(self) -> bool:
        """Whether the connection must keep reading (see the module docstring)."""

    def busy(self) -> bool:
        """Whether a request is still running on the connection."""


class InlineTransport:
    """The transport of a connection until (unless) it is handed to a real one."""

    __slots__ = (
        "_buffer",
        "_close_after",
        "_loop",
        "_protocol",
        "_reader_on",
        "_reading_paused",
        "_sock",
        "_state",
        "_transport",
        "_watching",
        "_writes_paused",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: ConnectionSocket, protocol: InlineProtocol
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._state = _INLINE
        self._buffer = bytearray()
        self._close_after = False
        self._reading_paused = False
        self._writes_paused = False
        self._transport: asyncio.Transport | None = None
        #: Kept and idle: the loop watches the socket for the next request (or the close).
        self._watching = False
        self._reader_on = False  # the loop's reader is registered

    def start(self) -> None:
        """connection_made, one read, and a transport if the connection needs one."""
        protocol = self._protocol
        protocol.connection_made(cast(asyncio.BaseTransport, self))  # duck-typed
        if self._state != _INLINE:
            return  # refused at admission, or stopped as it started
        if not self._feed_once():
            if self._state == _INLINE:
                self._hand_over()  # the web server has not written yet
        elif protocol.needs_transport():
            self._hand_over()
        else:
            # After the request's task has run its first step (it was scheduled first).
            self._loop.call_soon(self._after_first_step)

    def _after_first_step(self) -> None:
        if self._state == _INLINE:
            if self._protocol.busy():
                self._hand_over()  # the app awaits: watch the connection while it runs
            else:
                # Answered, and kept: a transport only if the web server sends another
                # request on it. nginx closes a kept connection after one request when more
                # run at once than its `keepalive` count, and then none is made.
                self._watching = True
                self._sync_reader()

    def _readable(self) -> None:
        """The kept connection is readable: its next request, or the web server closed it
        (then it is closed already; a read that found nothing leaves it watched)."""
        if self._feed_once():
            self._hand_over()  # reused: a transport for the rest of its life

    def _feed_once(self) -> bool:
        """Read once without waiting and give the protocol what came. True when it got
        bytes and the connection is still inline; False when nothing came (the state stays
        inline), or the web server closed it or the read failed (it is closed)."""
        try:
            data = self._sock.recv(RECV_BYTES, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as error:
            self._close_socket(error)
            return False
        protocol = self._protocol
        if not data:
            if not protocol.eof_received():
                self.close()
            return False
        protocol.data_received(data)
        return self._state == _INLINE

    def _sync_reader(self) -> None:
        """Register or remove the loop's reader as ``_watching`` and pausing say."""
        wanted = self._watching and not self._reading_paused
        if wanted != self._reader_on:
            self._reader_on = wanted
            if wanted:
                self._loop.add_reader(self._sock.fileno(), self._readable)
            else:
                self._loop.remove_reader(self._sock.fileno())

    # -- the asyncio.Transport methods FastCGIProtocol uses ---------------------------------

    def write(self, data: bytes) -> None:
        state = self._state
        if state == _HANDED_OVER:
            assert self._transport is not None
            self._transport.write(data)
            return
        if state == _HANDING_OVER:
            self._buffer += data
            if len(self._buffer) > HANDOVER_BUFFER_BYTES:
                self._pause_writes()
            return
        if state != _INLINE or not data:
            return
        try:
            sent = self._sock.send(data, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            self._close_socket(error)
            return
        if sent < len(data):
            self._buffer += data[sent:]
            self._pause_writes()
            self._hand_over()

    def close(self) -> None:
        state = self._state
        if state == _HANDED_OVER:
            assert self._transport is not None
            self._transport.close()
        elif state == _HANDING_OVER:
            self._close_after = True
        elif state == _INLINE:
            self._close_socket(None)

    def is_closing(self) -> bool:
        if self._transport is not None:
            return self._transport.is_closing()
        return self._state == _CLOSED or self._close_after

    def pause_reading(self) -> None:
        self._reading_paused = True
        if self._transport is not None:
            self._transport.pause_reading()
        self._sync_reader()

    def resume_reading(self) -> None:
        self._reading_paused = False
        if self._transport is not None:
            self._transport.resume_reading()
        self._sync_reader()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        if name == "socket":
            return self._sock
        if name == "peername":
            try:
                return self._sock.getpeername()
            except OSError:
                return default
        return default

    # -- handing over --------------------------------------------------------------------

    def _hand_over(self) -> None:
        self._watching = False
        self._sync_reader()
        self._state = _HANDING_OVER
        self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        # The same protocol object: its connection_made sees it was made already.
        same_protocol = cast(Callable[[], asyncio.Protocol], lambda: self._protocol)
        try:
            # The transport owns a socket.socket, and makes it non-blocking itself.
            self._sock = sock = as_socket(self._sock)
            transport, _ = await self._loop.connect_accepted_socket(same_protocol, sock)
        except Exception as error:  # the fd is gone, or the loop is closing
            self._state = _INLINE
            self._close_socket(error)
            return
        self._transport = real = transport
        self._state = _HANDED_OVER
        if self._reading_paused:
            real.pause_reading()
        if self._writes_paused:
            # Writes resume, unless the real transport's buffer is over its high-water mark
            # with what was buffered: then it pauses them again itself.
            self._writes_paused = False
            self._protocol.resume_writing()
        if self._buffer:
            real.write(bytes(self._buffer))
            self._buffer.clear()
        if self._close_after:
            real.close()

    def _pause_writes(self) -> None:
        """The app's writes wait (drain) until the real transport has taken the buffer."""
        if not self._writes_paused:
            self._writes_paused = True
            self._protocol.pause_writing()

    def _close_socket(self, error: Exception | None) -> None:
        """Close the socket before it had a transport (the core said so, or it failed),
        and tell the protocol, as a transport would, on the next loop round."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._watching = False
        self._sync_reader()  # before the fd is closed
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, error)


def accept_connections(
    loop: asyncio.AbstractEventLoop,
    listener: socket.socket,
    family: int,
    kind: int,
    make_protocol: Callable[[int], InlineProtocol],
) -> None:
    """The listener is readable: accept up to ACCEPT_BATCH connections and start them.
    ``family`` and ``kind`` are the listener's, as plain ints (reading them from it makes
    enums)."""
    for _ in range(ACCEPT_BATCH):
        accepted = accept_one(listener, family, kind)
        if accepted is None:
            return
        # The socket stays blocking: the InlineTransport's calls do not wait (MSG_DONTWAIT),
        # and a transport makes it non-blocking itself, so no system call for that here.
        InlineTransport(loop, accepted[0], make_protocol(family)).start()
