"""One connection on the threaded backend: a blocking socket, its ConnectionCore, and the
turns that let several threads share it safely (docs/architecture.md has the picture).

- ``lock`` guards the core, the request buffers and the flags below; it is never held
  during a system call that can block. Whoever waits for a turn sleeps on a Condition over
  it (``wait``, thread_turns), made the first time someone has to; ``wake`` wakes them.
- The read turn: exactly one thread reads the socket at a time (thread_reader) -- the owner
  waiting for the next request, an app thread waiting for its body, a writer whose peer is
  still sending. It is taken and given back inside ``with self.lock`` blocks.
- The write turn: one writer at a time (thread_writer.ConnectionWriter).
- Ownership: a connection is parked (in the pool's poller, no thread) or served by one pool
  thread in ``serve()``; ``parked`` moves under the lock (readable, _park, claim_for_stop),
  and only the thread serving it closes it.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from .accept import ConnectionSocket
from .core import ConnectionCore, CoreRequest, CoreSettings
from .thread_channel import ThreadChannel
from .thread_reader import ConnectionReader, recv_fitted, wait_readable
from .thread_turns import Turns
from .thread_writer import ConnectionWriter

_monotonic: Final = time.monotonic

#: How long a worker that shares its listeners' backlog with other workers (under a
#: supervisor) waits for the first bytes of a connection it has just accepted, before it
#: parks it. A web server writes its request right after it connects, so they are there at
#: once or within milliseconds; a silent peer is parked after this, costing no thread.
FIRST_BYTES_WAIT_SECONDS: Final = 1.0


class ConnectionHost(Protocol):
    """What a connection needs of the server and its pool (server.Server)."""

    core_settings: CoreSettings
    request_body_memory_bytes: int
    #: Other workers accept on the same listeners (a supervisor's).
    shares_backlog: bool

    def run_request(self, channel: ThreadChannel) -> None: ...

    def submit(self, work: Callable[[], None]) -> None: ...

    def park(self, connection: ThreadedConnection) -> None: ...

    def closed(self, connection: ThreadedConnection) -> None: ...


class ThreadedConnection(Turns):
    """See the module docstring; its lock and turns are a Turns'."""

    def __init__(self, sock: ConnectionSocket, peer: str, host: ConnectionHost) -> None:
        super().__init__()
        self.sock = sock
        self.host = host
        self.core = ConnectionCore(host.core_settings, peer, self._start, _monotonic())
        self.parked = False
        #: The pool's poller has it registered (pool._Poller.park).
        self.polled = False
        self.closed = False
        #: When the owner began running a request inline (0: it is not in the app).
        self.inline_since = 0.0
        self.watched = False
        self._pending: deque[ThreadChannel] = deque()
        self.writer = ConnectionWriter()
        self.reader = ConnectionReader()

    def _start(self, request: CoreRequest) -> ThreadChannel:
        """The core started a request (lock held): queue it for the owner or the pool."""
        channel = ThreadChannel(
            self, self.reader, self.writer, request, self.host.request_body_memory_bytes
        )
        self._pending.append(channel)
        return channel

    # -- ownership -----------------------------------------------------------------------------

    def readable(self) -> None:
        """The pool's poller saw input: serve it if it was parked, else (its owner is busy
        in a long request) read what came for the other requests on it (§3.3)."""
        with self.lock:
            claimed = self.parked
            self.parked = self.watched = False
        if claimed:
            self.serve()
        elif self.reader.take_turn(self, wait=False):
            self.reader.read_holding_turn(self, block=False)
            self._run_pending()

    def serve(self) -> None:
        """The owner's loop: run requests, read, and park when idle or close when done."""
        served = False
        while True:
            with self.lock:
                core = self.core
                done = core.should_close or self.closed
                channel = self._pending.popleft() if self._pending and not done else None
                others = bool(self._pending)
                idle = channel is None and core.idle
            if done:
                break
            if channel is not None:
                if others:  # multiplexed requests that came with it (§3.3): to the pool
                    self.host.submit(self._run_pending)
                self._run_inline(channel)
                served = True
            elif idle and served:
                # The web server sends its next request once it has read this response: wait
                # for it in the pool's poller (a read now would find nothing).
                if self._park():
                    return
            elif (
                self.reader.take_turn(self, wait=True)
                and not self.reader.read_holding_turn(self, block=not idle)
                and not self._first_bytes_coming()
                and self._park()
            ):
                return
        self.close()

    def _first_bytes_coming(self) -> bool:
        """Just accepted from a shared backlog and nothing has come yet: True if its first
        bytes come within FIRST_BYTES_WAIT_SECONDS. Parked instead, the request on its way
        would wait for this worker's threads, perhaps all busy in long requests, while other
        workers are free (php-fpm's workers too read what they accept)."""
        if not self.host.shares_backlog:
            return False
        with self.lock:
            fresh = self.core.life.fresh and not self.closed
        return fresh and wait_readable(self.sock, FIRST_BYTES_WAIT_SECONDS)

    def _run_inline(self, channel: ThreadChannel) -> None:
        # One float, written by the owner only: the clock may read a stale one (and watch a
        # moment later), so no lock is taken for it.
        self.inline_since = _monotonic()
        try:
            self.host.run_request(channel)
        finally:
            self.inline_since = 0.0

    def _run_pending(self) -> None:
        """Run requests the owner has not started (it is busy in another one)."""
        while True:
            with self.lock:
                if not self._pending:
                    return
                channel = self._pending.popleft()
            self.host.run_request(channel)

    def _park(self) -> bool:
        """Hand the idle connection to the pool's poller; False if work came meanwhile."""
        with self.lock:
            if not self.core.idle or self._pending or self.closed:
                return False
            self.parked = True
            self.host.park(self)  # under the lock: a stop cannot close it half-parked
        return True

    def claim_for_stop(self, now: float) -> bool:
        """A graceful stop: tell the core; True if the caller now owns it and must close it."""
        with self.lock:
            self.core.stop(now)
            claimed = self.parked and self.core.should_close
            if claimed:
                self.parked = False
        return claimed

    # -- closing -------------------------------------------------------------------------------

    def after_read(self) -> None:
        """A read started requests while the owner is in the app: the pool runs them."""
        self.host.submit(self._run_pending)

    def requests_waiting(self) -> bool:
        """Requests started that nobody runs (the caller holds the lock)."""
        return bool(self._pending) and self.inline_since > 0

    def shutdown(self, how: int) -> None:
        """Wake whoever waits on the socket (another thread, deciding it must close). Under
        the lock, and only while it is open: ``close`` marks it closed under the lock first,
        so a late shutdown cannot reach the descriptor once the kernel has given its number
        to a connection accepted since. (shutdown() does not block.)"""
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.shutdown(how)
            except OSError:
                pass

    def close(self) -> None:
        """Close the socket (idempotent; only the owner calls it); see close_socket."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            core = self.core
            # After the peer's EOF nothing is left to read that a close could turn into an RST.
            plain = core.peer_closed or (
                core.input_complete and core.protocol.should_close and not core.lost
            )
            # A stop or a timeout aborts the requests left; and the core lets go of _start.
            core.lose()
            self.wake()
        close_socket(self.sock, plain)
        self.host.closed(self)


def close_socket(sock: ConnectionSocket, plain: bool) -> None:
    """FIN first, then drop what input is left without waiting, so the close does not become
    an RST that could eat the response -- unless every request's input was read and §5.1
    ended the connection (``plain``)."""
    if not plain:
        try:
            sock.shutdown(socket.SHUT_WR)
            while recv_fitted(sock, socket.MSG_DONTWAIT):
                pass
        except OSError:
            pass
    sock.close()
