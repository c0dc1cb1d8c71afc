"""The threaded backend's write turn (thread_writer.ConnectionWriter) over a real core and one
end of a socketpair; the web server reads the other end."""

from __future__ import annotations

import socket
import threading

import pytest
from test_core import PARAMS, T0, Harness

from fcgigw.adapters.channel import ClientDisconnected
from fcgigw.protocol import (
    AbortRequest,
    EndRequest,
    InputEnd,
    OutputData,
    OutputEnd,
    RecordType,
    RequestStarted,
    Role,
)
from fcgigw.server.core import ConnectionCore, CoreRequest
from fcgigw.server.thread_turns import Turns
from fcgigw.server.thread_writer import ConnectionWriter


class NoReader:
    reading = False

    def read_while_writing(self, connection: object) -> None:
        raise AssertionError("nothing is read in these tests")


class Connection:
    """What the write turn needs of a ThreadedConnection."""

    def __init__(self, core: ConnectionCore, sock: socket.socket) -> None:
        self._turns = Turns()
        self.lock: threading.Lock = self._turns.lock
        self.core, self.sock = core, sock
        self.closed, self.inline_since = False, 0.0
        self.reader, self.writer = NoReader(), ConnectionWriter()

    def wait(self) -> None:
        self._turns.wait()

    def wake(self) -> None:
        self._turns.wake()

    def requests_waiting(self) -> bool:
        return False

    def after_read(self) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass


def end_request_queued_beside_a_second_request() -> tuple[Harness, CoreRequest]:
    """Requests 1 and 2 on one kept connection; request 1 finished before its body ended,
    then the body's end came, so the core has queued its END_REQUEST (nobody flushed it)."""
    harness = Harness()
    client = harness.client
    for request_id in (1, 2):
        harness.feed(client.send(RequestStarted(request_id, Role.RESPONDER, True, PARAMS)))
    first, second = (handler.request for handler in harness.handlers)
    harness.received(harness.core.finish(first, 0, b"Status: 200 OK\r\n\r\n", T0))
    harness.feed(client.send(InputEnd(1)))
    return harness, second


def test_a_held_end_request_queued_meanwhile_goes_out_with_an_aborted_requests_write() -> None:
    """Request 1 finished before its body ended, so its END_REQUEST was held; the body's end
    came and the core queued it. Request 2 was aborted and its app writes once more, which
    raises: the queued END_REQUEST must go out all the same. It was taken from the queue and
    dropped, and the web server waited for request 1 forever."""
    harness, second = end_request_queued_beside_a_second_request()
    harness.feed(harness.client.send(AbortRequest(2)))
    ours, web_server = socket.socketpair()
    with ours, web_server:
        connection = Connection(harness.core, ours)
        with pytest.raises(ClientDisconnected):
            connection.writer.send_output(connection, second, b"late", RecordType.STDOUT)
        web_server.settimeout(5)
        events = harness.received(web_server.recv(65536))
    assert events == [OutputEnd(1), EndRequest(1, 0)]
    assert not connection.writer.writing  # the turn was given back


def test_a_write_sends_what_the_core_queued_first() -> None:
    """Records leave in the order the core made them: the queued END_REQUEST of request 1,
    then request 2's output."""
    harness, second = end_request_queued_beside_a_second_request()
    ours, web_server = socket.socketpair()
    with ours, web_server:
        connection = Connection(harness.core, ours)
        connection.writer.send_output(
            connection, second, b"Status: 200 OK\r\n\r\n", RecordType.STDOUT
        )
        web_server.settimeout(5)
        events = harness.received(web_server.recv(65536))
    assert events == [OutputEnd(1), EndRequest(1, 0), OutputData(2, b"Status: 200 OK\r\n\r\n")]
