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
from typing import cast

from .accept import ACCEPT_BATCH, accept_one
from .aio_handover import DONTWAIT, INLINE, HandoverTransport, InlineProtocol
from .thread_reader import RECV_BYTES


class InlineTransport(HandoverTransport):
    """The transport of a connection until (unless) it is handed to a real one; this
    class decides when (see the module docstring)."""

    __slots__ = ()

    def start(self) -> None:
        """connection_made, one read, and a transport if the connection needs one."""
        protocol = self._protocol
        protocol.connection_made(cast(asyncio.BaseTransport, self))  # duck-typed
        if self._state != INLINE:
            return  # refused at admission, or stopped as it started
        if not self._feed_once():
            if self._state == INLINE:
                self._hand_over()  # the web server has not written yet
        elif protocol.needs_transport():
            self._hand_over()
        else:
            # After the request's task has run its first step (it was scheduled first).
            self._loop.call_soon(self._after_first_step)

    def _after_first_step(self) -> None:
        if self._state == INLINE:
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
            data = self._sock.recv(RECV_BYTES, DONTWAIT)
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
        return self._state == INLINE


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
