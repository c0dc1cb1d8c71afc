"""Writing on a threaded connection: the write turn.

One writer at a time, taken and given back under the connection's lock like the read turn.
Bytes are taken from the core when the turn is taken, and the writer sends what the core
queued meanwhile before it gives the turn back, so records go out in the order the core made
them (a held END_REQUEST after its STDOUT), and nobody waits for a blocked writer but another
writer. While a body is still coming, a writer whose peer is not reading takes that input in
(mod_fcgid and Caddy send the whole body before they read the response).
"""

from __future__ import annotations

import select
import socket
import time
from typing import Final

from ..adapters.channel import ClientDisconnected
from ..protocol import RecordType
from .core import CoreRequest
from .thread_turns import TurnConnection

#: How long a writer whose peer reads nothing waits before it looks again for input to take.
WRITE_POLL_SECONDS: Final = 0.05

_monotonic: Final = time.monotonic
_STDOUT: Final = RecordType.STDOUT
_POLL_IN: Final = select.POLLIN
_POLL_OUT: Final = select.POLLOUT


class ConnectionWriter:
    """The write side of one ThreadedConnection, which it is given on each call."""

    __slots__ = ("writing",)

    def __init__(self) -> None:
        self.writing = False  # the write turn (guarded by the connection's lock)

    def _take_turn(self, connection: TurnConnection) -> None:
        """Wait for the write turn (the caller holds the connection's lock)."""
        while self.writing:
            connection.wait()
        self.writing = True

    def send_output(
        self, connection: TurnConnection, request: CoreRequest, data: bytes, stream: RecordType
    ) -> None:
        """STDOUT (raises ClientDisconnected once the request cannot answer) or STDERR.
        What the core queued for others (a held END_REQUEST) goes out either way."""
        gone: ClientDisconnected | None = None
        with connection.lock:
            self._take_turn(connection)
            core = connection.core
            try:
                is_stdout = stream is _STDOUT
                records = request.output(data) if is_stdout else request.error_output(data)
            except ClientDisconnected as error:
                gone, records = error, b""
            output = core.data_to_send() + records
            reading_too = core.input_pending and gone is None
        self._send_and_release(connection, output, reading_too)
        if gone is not None:
            raise gone

    def finish(
        self, connection: TurnConnection, request: CoreRequest, app_status: int, last_stdout: bytes
    ) -> None:
        """The end of a response; wakes the owner if the connection is now to be closed."""
        with connection.lock:
            self._take_turn(connection)
            core = connection.core
            output = core.finish(request, app_status, last_stdout, _monotonic())
            output = core.data_to_send() + output
            wake_owner = (
                core.should_close and connection.inline_since == 0 and connection.reader.reading
            )
        try:
            self._send_and_release(connection, output, False)
        except ClientDisconnected:
            return  # mod_fcgid closes as soon as it has the headers: EPIPE here is normal
        if wake_owner:
            # A request run by another thread ended the connection while its owner waits in
            # recv() for more: wake it so it closes.
            connection.shutdown(socket.SHUT_RD)

    def flush(self, connection: TurnConnection) -> None:
        """Write what the core has queued (management answers, held END_REQUESTs), unless
        someone writes now: a writer sends the queue before it gives up its turn."""
        with connection.lock:
            if self.writing or not connection.core.has_output:
                return
            self.writing = True
            output = connection.core.data_to_send()
        try:
            self._send_and_release(connection, output, False)
        except ClientDisconnected:
            pass

    def _send_and_release(self, connection: TurnConnection, data: bytes, reading_too: bool) -> None:
        """Send ``data`` and whatever the core queued meanwhile, then give the turn back."""
        try:
            _send(connection, data, reading_too)
        finally:
            more = self._queued_or_release(connection)
            while more:
                try:
                    _send(connection, more, False)
                except ClientDisconnected:
                    pass
                more = self._queued_or_release(connection)

    def _queued_or_release(self, connection: TurnConnection) -> bytes:
        """What the core queued since the turn was taken, or b"" once the turn is given back."""
        with connection.lock:
            core = connection.core
            more = b"" if core.lost else core.data_to_send()
            if not more:
                self.writing = False
                connection.wake()
        return more


def _send(connection: TurnConnection, data: bytes, reading_too: bool) -> None:
    """Write ``data`` (the caller holds the write turn); see the module docstring."""
    if not data or connection.closed:
        return
    sock = connection.sock
    try:
        if not reading_too:
            sock.sendall(data)
            return
        view = memoryview(data)
        while view:
            if connection.core.lost:
                raise ClientDisconnected("the web server went away")
            try:
                sent = sock.send(view, socket.MSG_DONTWAIT)
                view = view[sent:]
                continue
            except BlockingIOError:
                pass
            poller = select.poll()
            poller.register(sock, _POLL_IN | _POLL_OUT)
            events = poller.poll(WRITE_POLL_SECONDS * 1000)
            if any(mask & _POLL_IN for _, mask in events):
                connection.reader.read_while_writing(connection)
    except OSError:
        with connection.lock:
            connection.core.lose()
            connection.wake()
        connection.shutdown(socket.SHUT_RDWR)  # whoever waits in recv() sees the end
        raise ClientDisconnected("the web server went away") from None
