"""One accepted FastCGI connection: blocking reads, events dispatched to request channels.

Whoever needs bytes from the socket reads it: the thread that owns the connection, or an
app thread waiting for its body. One reader at a time (``reader``); everyone else waits
(``wait``) for what the reader hands out. The first request runs inline in the owning
thread (no per-request thread hop); a request multiplexed beside it runs on another pool
thread.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..adapters.channel import ClientDisconnected
from ..config import Config
from ..protocol import (
    AbortRequest,
    ConnectionClosed,
    InputData,
    InputEnd,
    OutputData,
    RemoteProtocolError,
    RequestStarted,
    Role,
    ServerConnection,
)
from ..protocol.constants import MAX_CONTENT_LENGTH
from ..protocol.events import NeedData, ServerEvent
from .channel import SocketChannel
from .watchdog import Watchdog

logger = logging.getLogger("fcgigw.server")

#: How long a thread that needs input waits when another thread is reading the socket.
READER_WAIT_SECONDS = 0.05
#: One read: a whole STDIN record of the biggest kind (lighttpd, h2o send 65535-byte records).
RECV_BYTES = MAX_CONTENT_LENGTH + 1 + 8

_receive_buffers = threading.local()


def _receive_buffer() -> memoryview:
    """This thread's reusable RECV_BYTES read buffer."""
    view: memoryview | None = getattr(_receive_buffers, "view", None)
    if view is None:
        view = _receive_buffers.view = memoryview(bytearray(RECV_BYTES))
    return view


def recv_fitted(sock: socket.socket, flags: int = 0) -> bytes:
    """``sock.recv(RECV_BYTES, flags)`` without CPython's 64 KiB allocation shrunk to what
    came, once per read: that fragments glibc's heaps (the soak's RSS crept ~4 MiB per 100k
    requests while the memory in use stayed flat). Reads into this thread's buffer and
    copies out exactly what came."""
    view = _receive_buffer()
    return bytes(view[: sock.recv_into(view, RECV_BYTES, flags)])


RunRequest = Callable[[SocketChannel], None]
Submit = Callable[[Callable[[], None]], None]


class BusyWatch(Protocol):
    """Told when a kept connection starts and ends a request run inline (see pool.py)."""

    def started(self, connection: ServedConnection) -> None: ...

    def finished(self, connection: ServedConnection) -> None: ...


class ServedConnection:
    """State shared by the threads serving one connection."""

    def __init__(
        self,
        sock: socket.socket,
        peer: str,
        config: Config,
        *,
        run_request: RunRequest,
        submit: Submit,
        busy: BusyWatch | None = None,
        watchdog: Watchdog | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.config = config
        self.protocol = ServerConnection(config.protocol_settings)
        self.lock = threading.Lock()
        #: Made on first use (wait_for_reader): most connections never have a thread waiting.
        self._condition: threading.Condition | None = None
        self.reader = threading.Lock()
        self._write_lock = threading.Lock()
        self._channels: dict[int, SocketChannel] = {}
        self._pending: deque[SocketChannel] = deque()
        self._run_request = run_request
        self._submit = submit
        self._busy = busy
        self._inline_id: int | None = None
        self.closed = False
        #: Nothing received yet: accepted, its web server's first records still on the way.
        self.fresh = True
        #: Reading in the middle of a write: the protocol's own answers wait until after it.
        self._receiving_only = False
        self._watchdog = watchdog
        self._on_close = on_close
        #: Every request ended so far had its input read through its end (see close()).
        self._input_complete = True
        self.expect_request()

    # -- timeouts (enforced by the watchdog thread) ----------------------------------------

    def expect_request(self) -> None:
        """A request is (about to be) on its way: its PARAMS must be whole in time."""
        if self._watchdog is not None:
            seconds = self.config.header_timeout_seconds
            self._watchdog.set(self, seconds, lambda: self._time_out("header_timeout_seconds"))

    def expect_idle(self) -> None:
        """Parked with no request: closed after the idle timeout."""
        if self._watchdog is not None:
            seconds = self.config.idle_timeout_seconds
            self._watchdog.set(self, seconds, lambda: self._time_out("idle_timeout_seconds"))

    def _time_out(self, setting: str) -> None:
        """Called by the watchdog: wake whoever waits on this socket, which then closes."""
        seconds = getattr(self.config, setting)
        what = "sent no complete request" if setting.startswith("header") else "was idle"
        logger.info(
            "closing connection from %s: it %s for %d s (setting %s)",
            self.peer,
            what,
            seconds,
            setting,
        )
        self._shutdown(socket.SHUT_RDWR)

    # -- the owner's loop ----------------------------------------------------------------

    def serve(self) -> bool:
        """Serve until the connection is idle or closed; True means park it (keep-alive)."""
        served = False
        while True:
            with self.lock:
                if self.closed or self.protocol.should_close:
                    break
                idle = self._nothing_in_progress()
            channel = self._claim_pending()
            if channel is None:
                if idle and served:
                    # A web server sends its next request once it has read this response:
                    # wait for it in the pool's poller (a read now would find nothing).
                    return True
                # Under `reader`: a pool thread woken for this socket while it was watched
                # (read_available) may be reading it too; two readers feed bytes out of order.
                with self.reader:
                    if idle and not self._receive_ready_bytes():
                        # Nothing to read yet: give the thread back instead of blocking in
                        # recv, so idle keep-alive connections never pin the pool (Apache
                        # keeps them).
                        return True
                    channel = self._read_until_request()
            if channel is not None:
                self._run_inline(channel)
                served = True
        self.close()
        return False

    def _run_inline(self, channel: SocketChannel) -> None:
        """Run a request in the owning thread. While it runs nobody reads the socket, so a
        long request lets the pool watch the connection for multiplexed records (§3.3)."""
        self._inline_id = channel.request_id
        watch = channel.keep_connection and self._busy is not None
        if watch:
            assert self._busy is not None
            self._busy.started(self)
        try:
            self._run_request(channel)
        finally:
            self._inline_id = None
            if watch:
                assert self._busy is not None
                self._busy.finished(self)

    def _receive_ready_bytes(self) -> bool:
        """Take what the socket holds without waiting; False when it holds nothing."""
        try:
            data = recv_fitted(self.sock, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        with self.lock:
            self.protocol.receive_data(data)
        self.fresh = False
        return True

    def _read_until_request(self) -> SocketChannel | None:
        """Read and dispatch until a request can start in this thread, or until the
        connection closes or goes idle."""
        while True:
            event = self._next_event()
            if event is None:
                return None
            channel = self._dispatch(event)
            if channel is not None:
                self._dispatch_buffered()
                return channel
            with self.lock:
                if self.protocol.should_close or not self.protocol.active_requests:
                    return None

    # -- reading -------------------------------------------------------------------------

    def _dispatch_buffered(self) -> None:
        """Hand out the events already received (no system call): a GET's empty STDIN record
        usually came with its PARAMS, so the app starts with its input complete."""
        while (event := self._next_event(wait=None)) is not None:
            channel = self._dispatch(event)
            if channel is not None:
                self._hand_to_pool(channel)

    def _hand_to_pool(self, channel: SocketChannel) -> None:
        """A request multiplexed beside one already running here: another thread may take it,
        or the owner runs it when it is free (so one thread cannot deadlock)."""
        with self.lock:
            self._pending.append(channel)
        self._submit(self._run_pending)

    def _claim_pending(self) -> SocketChannel | None:
        """A multiplexed request nobody has started yet, now owned by the caller."""
        with self.lock:
            return self._pending.popleft() if self._pending else None

    def _run_pending(self) -> None:
        while (channel := self._claim_pending()) is not None:
            self._run_request(channel)

    def read_available(self) -> None:
        """Take what has arrived without waiting, while the owner runs a long request; start
        any request found here, on this thread (multiplexing, §3.3 and Appendix B ex. 4)."""
        if not self.reader.acquire(blocking=False):
            return  # whoever reads now hands out what arrives
        try:
            while (event := self._next_event(wait=False)) is not None:
                channel = self._dispatch(event)
                if channel is not None:
                    with self.lock:
                        self._pending.append(channel)
        finally:
            self._release_reader()
        self._run_pending()

    def pump_holding_reader(self) -> None:
        """Read one event for someone waiting on input; the caller acquired ``reader``."""
        try:
            event = self._next_event()
            if event is not None:
                channel = self._dispatch(event)
                if channel is not None:
                    self._hand_to_pool(channel)
        finally:
            self._release_reader()

    def _release_reader(self) -> None:
        """Give up ``reader`` and wake whoever waits for input or for their turn to read."""
        self.reader.release()
        with self.lock:  # a waiter checks and waits under ``lock``: no wake-up gets lost
            self._notify()

    def _notify(self) -> None:
        """Wake the threads in wait() (the caller holds ``lock``)."""
        if self._condition is not None:
            self._condition.notify_all()

    def wait(self, seconds: float | None = None) -> None:
        """Sleep until a reader hands something out (the caller holds ``lock``)."""
        if self._condition is None:
            self._condition = threading.Condition(self.lock)
        self._condition.wait(seconds)

    def _next_event(self, *, wait: bool | None = True) -> ServerEvent | None:
        """The next protocol event; None once closed. ``wait``: True reads the socket as
        needed, False reads only what it holds now, None looks only at bytes already read."""
        while True:
            try:
                with self.lock:
                    if self.closed:
                        return None
                    event = self.protocol.next_event()
                    automatic = b"" if self._receiving_only else self.protocol.data_to_send()
                if automatic:
                    self._write(automatic)
                if not isinstance(event, NeedData):
                    return event
                if wait and self._idle():
                    # Only records the protocol answered itself (GET_VALUES, an ABORT before
                    # the PARAMS ended): nothing is in progress, so park rather than block.
                    if not self._receive_ready_bytes():
                        return None
                elif wait:
                    data = recv_fitted(self.sock)
                    with self.lock:
                        self.protocol.receive_data(data)
                    self.fresh = False
                elif wait is None or not self._receive_ready_bytes():
                    return None
            except RemoteProtocolError as error:
                limit = f" (setting {error.limit})" if error.limit else ""
                logger.warning("closing connection from %s: %s%s", self.peer, error, limit)
                self._lose_connection()
                return None
            except (OSError, ClientDisconnected):
                self._lose_connection()
                return None

    def wait_for_input(self, seconds: float) -> bool:
        """Whether the socket has input now or within ``seconds`` (the end-of-body wait).
        Bytes already buffered do not count: after take_available_input() they can only be
        the start of a record whose rest may never come."""
        if self.closed:
            return False
        try:
            return bool(select.select([self.sock], [], [], seconds)[0])
        except (OSError, ValueError):
            return False  # closed meanwhile

    def take_available_input(self) -> None:
        """Read and hand out what has arrived, without waiting for more. If another thread
        is reading, let it: wait a moment for what it hands out."""
        if self.reader.acquire(blocking=False):
            try:
                self._take_available()
            finally:
                self._release_reader()
        else:
            with self.lock:
                self.wait(READER_WAIT_SECONDS)

    def _idle(self) -> bool:
        with self.lock:
            return self._nothing_in_progress()

    def _nothing_in_progress(self) -> bool:
        """No request begun and no partial record (the caller holds ``lock``)."""
        return not self.protocol.active_requests and not self.protocol.buffered_bytes

    def _dispatch(self, event: ServerEvent) -> SocketChannel | None:
        """Hand an event to its request; return a channel when a request can start."""
        with self.lock:
            if isinstance(event, RequestStarted):
                if self._watchdog is not None:
                    self._watchdog.clear(self)  # the PARAMS are whole: no header timeout
                started = SocketChannel(self, event)
                self._channels[event.request_id] = started
                return started
            if isinstance(event, ConnectionClosed):
                self._mark_lost()
                return None
            channel = self._channels.get(event.request_id)
            if channel is not None:
                _deliver(channel, event)
            self._notify()
        return None

    # -- writing -------------------------------------------------------------------------

    def send_event(self, event: OutputData) -> None:
        """Write one output event now; ClientDisconnected if the connection is gone."""
        with self.lock:
            if self.closed:
                raise ClientDisconnected("connection closed")
            data = self.protocol.send(event)
        self._write(data)

    def end_request(self, channel: SocketChannel, last_stdout: bytes, app_status: int) -> None:
        """Last STDOUT bytes and END_REQUEST in one write; then close if §5.1 says so."""
        with self.lock:
            self._channels.pop(channel.request_id, None)
            if self.closed:
                return
            if not channel.input_ended or channel.aborted or channel.role is Role.AUTHORIZER:
                # The rest of its body may still come; an Authorizer's input ends with its
                # PARAMS (§6.3), but lighttpd sends an empty STDIN record after them.
                self._input_complete = False
            data = self.protocol.end_response(channel.request_id, last_stdout, app_status)
            close = self.protocol.should_close
        try:
            self._write(data)
        except ClientDisconnected:
            # mod_fcgid closes as soon as it has the headers: EPIPE here is normal.
            return
        if close and channel.request_id != self._inline_id:
            # A multiplexed request finished last on another thread: wake the owner blocked
            # in recv so it closes the connection.
            self._shutdown(socket.SHUT_RD)

    def _write(self, data: bytes) -> None:
        try:
            with self._write_lock:
                if self._input_pending():
                    self._send_while_reading(data)
                else:
                    self.sock.sendall(data)
        except OSError as error:
            self._lose_connection()
            raise ClientDisconnected(str(error)) from error

    def _input_pending(self) -> bool:
        """Some request's body is still coming (the web server may be sending it now)."""
        if not self._channels:
            return False  # the usual end of a response: its request is already gone
        with self.lock:
            return any(not channel.input_ended for channel in self._channels.values())

    def _send_while_reading(self, data: bytes) -> None:
        """Write ``data`` while taking in what the web server sends. mod_fcgid and Caddy send
        the whole body before they read the response: blocked in sendall() we would wait for
        them while they wait for us. The body goes to its request's buffer (which spills to
        disk), or is dropped once the app has answered."""
        view = memoryview(data)
        while view:
            reading = self.reader.acquire(blocking=False)  # else someone else reads already
            try:
                wanted = [self.sock] if reading else []
                readable, writable, _ = select.select(wanted, [self.sock], [])
                if writable:
                    view = view[self.sock.send(view, socket.MSG_DONTWAIT) :]
                elif readable:
                    self._take_available()
            except BlockingIOError:
                pass
            finally:
                if reading:
                    self._release_reader()

    def _take_available(self) -> None:
        """Read and hand out what has arrived, without writing (the caller is mid-write)."""
        self._receiving_only = True
        try:
            while (event := self._next_event(wait=False)) is not None:
                channel = self._dispatch(event)
                if channel is not None:
                    self._hand_to_pool(channel)
        finally:
            self._receiving_only = False

    # -- ending --------------------------------------------------------------------------

    def _lose_connection(self) -> None:
        with self.lock:
            self._mark_lost()

    def _mark_lost(self) -> None:
        """Connection gone (EOF, RST, protocol error): every request on it is aborted."""
        self.closed = True
        for channel in self._channels.values():
            channel.aborted = True
        self._notify()

    def _shutdown(self, how: int = socket.SHUT_RDWR) -> None:
        try:
            self.sock.shutdown(how)
        except OSError:
            pass

    def close(self) -> None:
        """Close the socket (idempotent): FIN first, then drop what input is left without
        waiting, so the close does not turn into an RST that could eat the response."""
        with self.lock:
            self._mark_lost()
            on_close, self._on_close = self._on_close, None
        if self._watchdog is not None:
            self._watchdog.clear(self)
        if not (self._input_complete and self.protocol.should_close):
            # The web server may still be sending: see the docstring.
            self._shutdown(socket.SHUT_WR)
            try:
                view = _receive_buffer()
                while self.sock.recv_into(view, RECV_BYTES, socket.MSG_DONTWAIT):
                    pass
            except OSError:
                pass
        # Else §5.1's usual end: every request's input was read to its end and the last one
        # had no KEEP_CONN, so the web server sends nothing more, and a plain close is a FIN.
        self.sock.close()
        if on_close is not None:
            on_close()


def _deliver(channel: SocketChannel, event: InputData | InputEnd | AbortRequest) -> None:
    """Apply an input event to its request (the connection lock is held)."""
    if isinstance(event, AbortRequest):
        channel.aborted = True
    elif isinstance(event, InputData):
        channel.add_input(event.data, event.stream)
    else:
        channel.ended.add(event.stream)
