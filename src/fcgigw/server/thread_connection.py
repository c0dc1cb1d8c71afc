"""One connection on the threaded backend: a blocking socket, its ConnectionCore, and the
turns that let several threads share it safely (see the package docstring for the picture).

- ``lock`` (with ``turn``, a Condition over it) guards the core, the request buffers and the
  flags below; it is never held during a system call that can block.
- The read turn (``reading``): exactly one thread reads the socket at a time -- the owner
  waiting for the next request, an app thread waiting for its body, a writer whose peer is
  still sending. It is taken and given back inside ``with self.lock`` blocks.
- The write turn (``writing``): one writer at a time, taken like the read turn. Bytes are
  taken from the core when the turn is taken, and the writer sends what the core queued
  meanwhile before it gives the turn back, so records go out in the order the core made them
  (a held END_REQUEST after its STDOUT) and nobody ever waits for a blocked writer but
  another writer.
- Ownership: a connection is PARKED (in the pool's poller, no thread) or SERVED by one pool
  thread in ``serve()``; ``claim`` moves it between the two under the lock.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..adapters.channel import ClientDisconnected
from ..protocol import RecordType
from ..protocol.constants import MAX_CONTENT_LENGTH
from .core import ConnectionCore, CoreRequest, CoreSettings
from .thread_channel import ThreadChannel

#: One read: a whole STDIN record of the biggest kind (lighttpd, h2o send 65535-byte records).
RECV_BYTES = MAX_CONTENT_LENGTH + 1 + 8
#: How long a writer whose peer reads nothing waits before it looks again for input to take.
WRITE_POLL_SECONDS = 0.05

_monotonic = time.monotonic
_receive_buffers = threading.local()
_STDOUT = RecordType.STDOUT
_POLL_IN, _POLL_OUT = select.POLLIN, select.POLLOUT


def recv_fitted(sock: socket.socket, flags: int = 0) -> bytes:
    """``sock.recv(RECV_BYTES, flags)`` into this thread's reused buffer, copied out to the
    size that came: CPython's own recv allocates 64 KiB and shrinks it on every read, which
    fragments glibc's heaps (the soak's RSS crept ~4 MiB per 100k requests)."""
    view: memoryview | None = getattr(_receive_buffers, "view", None)
    if view is None:
        view = _receive_buffers.view = memoryview(bytearray(RECV_BYTES))
    return bytes(view[: sock.recv_into(view, RECV_BYTES, flags)])


class ConnectionHost(Protocol):
    """What a connection needs of the server and its pool (thread_server.Server)."""

    core_settings: CoreSettings
    request_body_memory_bytes: int

    def run_request(self, channel: ThreadChannel) -> None: ...

    def submit(self, work: Callable[[], None]) -> None: ...

    def park(self, connection: ThreadedConnection) -> None: ...

    def closed(self, connection: ThreadedConnection) -> None: ...


class ThreadedConnection:
    """See the module docstring."""

    def __init__(self, sock: socket.socket, peer: str, host: ConnectionHost) -> None:
        self.sock = sock
        self.host = host
        self.lock = threading.Lock()
        self.turn = threading.Condition(self.lock)
        self.core = ConnectionCore(host.core_settings, peer, self._start, _monotonic())
        self.reading = False
        self.parked = False
        self.closed = False
        #: When the owner began running a request inline (0: it is not in the app).
        self.inline_since = 0.0
        self.watched = False
        self.writing = False
        self._pending: deque[ThreadChannel] = deque()

    def _start(self, request: CoreRequest) -> ThreadChannel:
        """The core started a request (lock held): queue it for the owner or the pool."""
        channel = ThreadChannel(self, request, self.host.request_body_memory_bytes)
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
        elif self._take_turn(wait=False):
            self._read_holding_turn(block=False)
            self._run_pending()

    def serve(self) -> None:
        """The owner's loop: run requests, read, and park when idle or close when done."""
        while True:
            with self.lock:
                if self.core.should_close or self.closed:
                    break
                channel = self._pending.popleft() if self._pending else None
                others = bool(self._pending)
                idle = self.core.idle
            if channel is not None:
                if others:  # multiplexed requests that came with it (§3.3): to the pool
                    self.host.submit(self._run_pending)
                self._run_inline(channel)
            elif (
                self._take_turn(wait=True)
                and not self._read_holding_turn(block=not idle)
                and self._park()
            ):
                return
        self.close()

    def _run_inline(self, channel: ThreadChannel) -> None:
        with self.lock:
            self.inline_since = _monotonic()
        try:
            self.host.run_request(channel)
        finally:
            with self.lock:
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

    # -- reading -------------------------------------------------------------------------------

    def _take_turn(self, *, wait: bool) -> bool:
        """Take the read turn if free; else (``wait``) sleep until the reader hands out."""
        with self.lock:
            if not self.reading and not self.closed:
                self.reading = True
                return True
            if wait and not self.closed:
                self.turn.wait()
            return False

    def _read_holding_turn(self, *, block: bool) -> bool:
        """Read once and feed the core, then give the turn back; False if ``block`` is off
        and nothing had come."""
        data: bytes | None = None
        try:
            if not block:
                data = recv_fitted(self.sock, socket.MSG_DONTWAIT)
            elif self._wait_readable():
                data = recv_fitted(self.sock)
        except BlockingIOError:
            pass
        except OSError:
            data = b""
        finally:
            with self.lock:
                self.reading = False
                now = _monotonic()
                if data is not None:
                    self.core.receive(data, now)
                elif block:
                    self.core.tick(now)  # a held END_REQUEST's quiet time is over
                start_others = bool(self._pending) and self.inline_since > 0
                self.turn.notify_all()
        self._flush()
        if start_others:
            self.host.submit(self._run_pending)
        return data is not None or block

    def _wait_readable(self) -> bool:
        """Block until input comes, or until a held END_REQUEST's quiet time is over."""
        with self.lock:
            timeout = self.core.held_deadline - _monotonic()
        if timeout == float("inf"):
            return True
        return bool(select.select([self.sock], [], [], max(timeout, 0.0))[0])

    def read_body(self, channel: ThreadChannel, stream: RecordType, size: int) -> bytes:
        """Up to ``size`` bytes of a request's input stream, reading the socket when nobody
        else is; b"" at the stream's end or once the request is aborted."""
        buffer = channel.inputs[stream]
        while True:
            with self.lock:
                while True:
                    if len(buffer):
                        return buffer.read(size)
                    if stream in channel.ended or channel.request.aborted:
                        return b""
                    if not self.reading:
                        self.reading = True
                        break
                    self.turn.wait()
            self._read_holding_turn(block=True)

    # -- writing -------------------------------------------------------------------------------

    def _take_write_turn(self) -> None:
        """Wait for the write turn (the caller holds ``lock``)."""
        while self.writing:
            self.turn.wait()
        self.writing = True

    def send_output(self, request: CoreRequest, data: bytes, stream: RecordType) -> None:
        """STDOUT (raises ClientDisconnected once the request cannot answer) or STDERR."""
        with self.lock:
            self._take_write_turn()
            core = self.core
            try:
                if stream is _STDOUT:
                    output = core.data_to_send() + core.output(request, data)
                else:
                    output = core.data_to_send() + core.error_output(request, data)
            except ClientDisconnected:
                self.writing = False
                self.turn.notify_all()
                raise
            reading_too = core.input_pending
        self._send_and_release(output, reading_too)

    def finish(self, request: CoreRequest, app_status: int, last_stdout: bytes) -> None:
        """The end of a response; wakes the owner if the connection is now to be closed."""
        with self.lock:
            self._take_write_turn()
            core = self.core
            output = core.finish(request, app_status, last_stdout, _monotonic())
            output = core.data_to_send() + output
            wake_owner = core.should_close and self.inline_since == 0 and self.reading
        try:
            self._send_and_release(output, False)
        except ClientDisconnected:
            return  # mod_fcgid closes as soon as it has the headers: EPIPE here is normal
        if wake_owner:
            # A request run by another thread ended the connection while its owner waits in
            # recv() for more: wake it so it closes.
            self._shutdown(socket.SHUT_RD)

    def _flush(self) -> None:
        """Write what the core has queued (management answers, held END_REQUESTs), unless
        someone writes now: a writer sends the queue before it gives up its turn."""
        with self.lock:
            if self.writing or not self.core.has_output:
                return
            self.writing = True
            output = self.core.data_to_send()
        try:
            self._send_and_release(output, False)
        except ClientDisconnected:
            pass

    def _send_and_release(self, data: bytes, reading_too: bool) -> None:
        """Send ``data`` and whatever the core queued meanwhile, then give the turn back."""
        try:
            self._send(data, reading_too)
        finally:
            while True:
                with self.lock:
                    more = b"" if self.core.lost else self.core.data_to_send()
                    if not more:
                        self.writing = False
                        self.turn.notify_all()
                        break
                try:
                    self._send(more, False)
                except ClientDisconnected:
                    pass

    def _send(self, data: bytes, reading_too: bool) -> None:
        """Write ``data`` (the caller holds the write turn). While a body is still coming,
        take it in when the peer is not reading: mod_fcgid and Caddy send the whole body
        before they read the response."""
        if not data or self.closed:
            return
        try:
            if not reading_too:
                self.sock.sendall(data)
                return
            view = memoryview(data)
            while view:
                if self.core.lost:
                    raise ClientDisconnected("the web server went away")
                try:
                    view = view[self.sock.send(view, socket.MSG_DONTWAIT) :]
                    continue
                except BlockingIOError:
                    pass
                poller = select.poll()
                poller.register(self.sock, _POLL_IN | _POLL_OUT)
                events = poller.poll(WRITE_POLL_SECONDS * 1000)
                if any(mask & _POLL_IN for _, mask in events) and self._take_turn(wait=False):
                    self._read_holding_turn(block=False)
        except OSError:
            with self.lock:
                self.core.lose()
                self.turn.notify_all()
            self._shutdown(socket.SHUT_RDWR)  # whoever waits in recv() sees the end
            raise ClientDisconnected("the web server went away") from None

    # -- closing -------------------------------------------------------------------------------

    def tick(self, now: float) -> list[CoreRequest]:
        """The clock's visit: run the core's deadlines; wake the owner if it must close."""
        with self.lock:
            core = self.core
            if self.closed or now < core.next_deadline:
                return []
            expired = core.tick(now)
            close = core.should_close
        self._flush()
        if close:
            self._shutdown(socket.SHUT_RDWR)  # the owner (or the poller) sees EOF and closes
        return expired

    def wake_readers(self) -> None:
        with self.lock:
            self.turn.notify_all()

    def _shutdown(self, how: int) -> None:
        try:
            self.sock.shutdown(how)
        except OSError:
            pass

    def close(self) -> None:
        """Close the socket (idempotent; only the owner calls it). FIN first, then drop what
        input is left without waiting, so the close does not become an RST that could eat the
        response -- unless every request's input was read and §5.1 ended the connection."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            core = self.core
            plain = core.input_complete and core.protocol.should_close and not core.lost
            core.lose()
            self.turn.notify_all()
        if not plain:
            self._shutdown(socket.SHUT_WR)
            try:
                while recv_fitted(self.sock, socket.MSG_DONTWAIT):
                    pass
            except OSError:
                pass
        self.sock.close()
        self.host.closed(self)
