"""One connection on the asyncio backend: an asyncio.Protocol that feeds a ConnectionCore and
writes what it says, with flow control both ways.

Reading pauses while the connection holds more unread body than request_body_memory_bytes
(bounded memory for a slow app); writers wait for the transport to drain (backpressure).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Final, cast
from typing import Protocol as TypingProtocol

from .aio_channel import AsyncChannel
from .connection_limit import Admission, peer_name
from .core import ConnectionCore, CoreRequest, CoreSettings

_monotonic: Final = time.monotonic


class ConnectionHost(TypingProtocol):
    """What a connection needs of the server (aio.AsyncServer)."""

    admission: Admission
    core_settings: CoreSettings
    request_body_memory_bytes: int
    connections: set[FastCGIProtocol]
    #: Set when a graceful stop begins: a connection made after it is stopped as it starts.
    stopping: bool

    def start_request(self, channel: AsyncChannel) -> None: ...

    def new_future(self) -> asyncio.Future[None]: ...


class FastCGIProtocol(asyncio.Protocol):
    """One connection from the web server."""

    #: Made in connection_made once the connection is admitted.
    core: ConnectionCore

    def __init__(self, host: ConnectionHost, family: int) -> None:
        self.host = host
        self.family = family
        self.transport: asyncio.Transport | None = None
        self._made = False
        self._unread_bytes = 0
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._made:
            # Its InlineTransport handed the socket to a real transport (aio_inline): that
            # one forwards to it, so the protocol keeps writing to the InlineTransport.
            return
        self._made = True
        # A stream transport (uvloop's does not subclass asyncio.Transport, so no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        host = self.host
        family = self.family
        peer: object = ""
        if family != socket.AF_UNIX:
            # Only a TCP peer is checked against the allowlist (aio_inline.accept_connections
            # set TCP_NODELAY).
            peer = transport.get_extra_info("peername")
        if not host.admission.admit(family, peer):
            transport.close()
            return
        now = _monotonic()
        self.core = ConnectionCore(host.core_settings, peer_name(family, peer), self._start, now)
        host.connections.add(self)
        if host.stopping:
            # Accepted by the loop just before the listener closed: the stop has already
            # gone over the connections it knew; this one is stopped as a fresh one is.
            self.core.stop(now)
            self.after_core()

    def data_received(self, data: bytes) -> None:
        self.core.receive(data, _monotonic())
        self.after_core()

    def eof_received(self) -> bool:
        self.data_received(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        # An InlineTransport holds this protocol: let go of it (no cycle left to collect).
        self.transport = None
        connections = self.host.connections
        if self not in connections:
            return  # refused at admission
        connections.discard(self)
        self.host.admission.release()
        self.core.lose()
        self._wake_drain_waiters()

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._reading_paused and self.transport:
            # The web server is not reading our response: it may be sending the whole body
            # before it reads anything (mod_fcgid, Caddy). Not reading it now would make each
            # side wait for the other, so take the body in, over the memory threshold.
            self._reading_paused = False
            self.transport.resume_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.input_buffered(0)  # back under the threshold's rule
        self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- the core's decisions --------------------------------------------------------------

    def _start(self, request: CoreRequest) -> AsyncChannel:
        channel = AsyncChannel(self, request)
        self.host.start_request(channel)
        return channel

    def after_core(self) -> None:
        """Write what the core has to send; close if it says so."""
        core = self.core
        data = core.data_to_send()
        if data:
            self.write(data)
        if core.should_close:
            self.close()

    def needs_transport(self) -> bool:
        """Whether the connection must go on reading after its first read (aio_inline):
        something of a request is still to come. (A kept connection is watched once its
        request is answered.)"""
        core = self.core
        if core.should_close:
            return False
        return not core.requests or core.input_pending or core.partial_request

    def busy(self) -> bool:
        """Whether a request is still running (aio_inline)."""
        return bool(self.core.requests)

    def tick(self, now: float) -> list[CoreRequest]:
        """Run the core's deadlines (called by the server's sweep)."""
        core = self.core
        expired = core.tick(now) if now >= core.next_deadline else []
        self.after_core()
        return expired

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    # -- what channels call ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.core.lost:
            transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is over its high-water mark."""
        if self._writing_paused and not self.core.lost:
            waiter = self.host.new_future()
            self._drain_waiters.append(waiter)
            await waiter

    def new_future(self) -> asyncio.Future[None]:
        return self.host.new_future()

    @property
    def reading_paused(self) -> bool:
        return self._reading_paused

    def input_buffered(self, size: int) -> None:
        self._unread_bytes += size
        limit = self.host.request_body_memory_bytes
        paused = self._reading_paused or self._writing_paused
        if self._unread_bytes > limit and not paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()

    def input_consumed(self, size: int) -> None:
        self._unread_bytes -= size
        limit = self.host.request_body_memory_bytes
        if self._reading_paused and self._unread_bytes <= limit // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
