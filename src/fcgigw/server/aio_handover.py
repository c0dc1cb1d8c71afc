"""Handing a connection's socket to an event-loop transport, and writing until then.

The base of aio_inline's InlineTransport: the asyncio.Transport methods FastCGIProtocol
uses, sent straight to the socket while the connection is inline and forwarded to the real
transport once it has one, and the handover itself (``loop.connect_accepted_socket``, the
same protocol), with the bytes written meanwhile buffered so records keep their order.
What decides when to hand over (the first read, the app's first step, the kept connection
watched with ``add_reader``) is the subclass's: see aio_inline.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from .accept import ConnectionSocket, as_socket

DONTWAIT: Final = int(socket.MSG_DONTWAIT)

#: While the socket is being handed to a transport, writes beyond this wait (drain).
HANDOVER_BUFFER_BYTES: Final = 64 * 1024

INLINE: Final = 0
HANDING_OVER: Final = 1
HANDED_OVER: Final = 2
CLOSED: Final = 3


class InlineProtocol(Protocol):
    """What the InlineTransport needs of its protocol (aio_connection.FastCGIProtocol)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def needs_transport(self) -> bool:
        """Whether the connection must keep reading after its first read (aio_inline)."""

    def busy(self) -> bool:
        """Whether a request is still running on the connection."""


class HandoverTransport:
    """A connection's transport: the socket itself, then (once handed over) a real one."""

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
        self._state = INLINE
        self._buffer = bytearray()
        self._close_after = False
        self._reading_paused = False
        self._writes_paused = False
        self._transport: asyncio.Transport | None = None
        #: Kept and idle: the loop watches the socket for the next request (or the close).
        self._watching = False
        self._reader_on = False  # the loop's reader is registered

    def _readable(self) -> None:
        """The loop's reader found the watched socket readable (the subclass decides)."""
        raise NotImplementedError

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
        if state == HANDED_OVER:
            assert self._transport is not None
            self._transport.write(data)
            return
        if state == HANDING_OVER:
            self._buffer += data
            if len(self._buffer) > HANDOVER_BUFFER_BYTES:
                self._pause_writes()
            return
        if state != INLINE or not data:
            return
        try:
            sent = self._sock.send(data, DONTWAIT)
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
        if state == HANDED_OVER:
            assert self._transport is not None
            self._transport.close()
        elif state == HANDING_OVER:
            self._close_after = True
        elif state == INLINE:
            self._close_socket(None)

    def is_closing(self) -> bool:
        if self._transport is not None:
            return self._transport.is_closing()
        return self._state == CLOSED or self._close_after

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
        self._state = HANDING_OVER
        self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        # The same protocol object: its connection_made sees it was made already.
        same_protocol = cast(Callable[[], asyncio.Protocol], lambda: self._protocol)
        try:
            # The transport owns a socket.socket, and makes it non-blocking itself.
            self._sock = sock = as_socket(self._sock)
            transport, _ = await self._loop.connect_accepted_socket(same_protocol, sock)
        except Exception as error:  # the fd is gone, or the loop is closing
            self._state = INLINE
            self._close_socket(error)
            return
        self._transport = real = transport
        self._state = HANDED_OVER
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
        if self._state == CLOSED:
            return
        self._state = CLOSED
        self._watching = False
        self._sync_reader()  # before the fd is closed
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, error)
