"""The web server's side of raw FastCGI connections, for tests that need what fcgigw.client
does not do: several requests at once on one connection, their records in any order, aborts
and partial uploads, slow reads. A select loop sends and receives at once (both ends may be
writing when requests are multiplexed), and every wait has a deadline."""

from __future__ import annotations

import hashlib
import json
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fcgigw.client import FastCGIClient, build_params
from fcgigw.config import Config
from fcgigw.protocol import (
    NEED_DATA,
    AbortRequest,
    ClientConnection,
    ConnectionClosed,
    EndRequest,
    InputData,
    InputEnd,
    OutputData,
    ProtocolStatus,
    RecordType,
    RequestStarted,
    Role,
    build_record,
)

READ_TIMEOUT = 10.0  # a wait for the server longer than this is a hang
RST = b"\1\0\0\0\0\0\0\0"  # SO_LINGER on, 0 s: close() sends RST


class Hang(Exception):
    """Nothing came from the server within READ_TIMEOUT."""


@dataclass
class Req:
    """One request as the client sent it, and what came back under its id."""

    rid: int
    path: str
    expected: bytes  # what the test expects as the response body
    tag: bytes  # what marks its bytes (see test_stress)
    after_idle: bool  # its BEGIN_REQUEST may find the connection idle: a stop may close it
    stdout: bytearray = field(default_factory=bytearray)
    end: EndRequest | None = None
    aborted: bool = False

    def __str__(self) -> str:
        state = "aborted" if self.aborted else "ended" if self.end else "not ended"
        return f"id {self.rid} {self.path} ({state}, {len(self.stdout)} bytes back)"


def open_socket(address: str, rcvbuf: int = 0) -> socket.socket:
    """A non-blocking connection to HOST:PORT or unix:PATH, with a receive buffer of
    ``rcvbuf`` bytes (set before the handshake fixes the window)."""
    unix = address.startswith("unix:")
    sock = socket.socket(socket.AF_UNIX if unix else socket.AF_INET)
    host, _, port = address.rpartition(":")
    try:
        sock.settimeout(READ_TIMEOUT)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(address[5:] if unix else (host, int(port)))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Conn:
    """One raw connection. Request ids are never reused on it, so a late record for an
    ended id is a protocol error (ClientConnection raises)."""

    def __init__(self, address: str, first_id: int = 1, rcvbuf: int = 0) -> None:
        self.sock = open_socket(address, rcvbuf)
        self.protocol = ClientConnection()
        self.outbox = bytearray()
        self.reqs: dict[int, Req] = {}
        self.next_id = first_id
        self.eof = self.kept = False  # kept: a request ended and the connection stayed open
        self.recv_size, self.read_pause = 262144, 0.0
        self.trace: list[str] = []  # the records in the order sent, when a test shuffles them

    def begin(
        self, path: str, expected: bytes, keep: bool, length: int = 0, tag: bytes = b""
    ) -> Req:
        """Queue BEGIN_REQUEST and the whole PARAMS stream (a POST when ``length``)."""
        req = self.reqs[self.next_id] = Req(self.next_id, path, expected, tag, self.kept)
        self.next_id += 1
        params = tuple(build_params("POST" if length else "GET", path, body_length=length))
        self.outbox += self.protocol.send(RequestStarted(req.rid, Role.RESPONDER, keep, params))
        return req

    def body(self, req: Req, data: bytes, end: bool = False) -> None:
        self.outbox += self.protocol.send(InputData(req.rid, data)) if data else b""
        self.outbox += self.protocol.send(InputEnd(req.rid)) if end else b""

    def stray_empty_record(self, req: Req) -> None:
        """An empty STDIN record amid a body with a length, as mod_fcgid sends one wherever
        an HTTP/2 client's upload paused: not the body's end."""
        self.outbox += build_record(RecordType.STDIN, req.rid)

    def abort(self, req: Req) -> None:
        if req.rid in self.protocol.active_requests:  # not once its END_REQUEST is here
            self.outbox += self.protocol.send(AbortRequest(req.rid))
            req.aborted = True

    def send_now(self) -> None:
        """Send the queue without reading anything (the pump would)."""
        self.sock.settimeout(READ_TIMEOUT)
        self.sock.sendall(self.outbox)
        self.sock.setblocking(False)
        self.outbox.clear()

    def pump(self, done: Callable[[], bool]) -> None:
        """Send the queue and take in what arrives until ``done()`` or EOF."""
        deadline = time.monotonic() + READ_TIMEOUT
        while not (done() and not self.outbox) and not self.eof:
            if (left := deadline - time.monotonic()) <= 0:
                waiting = [str(req) for req in self.reqs.values() if not req.end]
                raise Hang(f"nothing within {READ_TIMEOUT} s for {waiting} {self.trace}")
            writers = [self.sock] if self.outbox else []
            readable, writable, _ = select.select([self.sock], writers, [], left)
            if writable:
                try:
                    del self.outbox[: self.sock.send(self.outbox[:65536])]
                except (BrokenPipeError, ConnectionResetError):
                    self.outbox.clear()  # closed by the server: its EOF comes next
            if readable:
                self.receive()

    def receive(self) -> None:
        try:
            data = self.sock.recv(self.recv_size)
        except ConnectionResetError:
            data = b""
        self.protocol.receive_data(data)
        while (event := self.protocol.next_event()) is not NEED_DATA:
            if isinstance(event, OutputData) and event.stream is RecordType.STDOUT:
                self.reqs[event.request_id].stdout += event.data
            elif isinstance(event, EndRequest):
                self.reqs[event.request_id].end = event
            elif isinstance(event, ConnectionClosed):
                self.eof = True
                return
        time.sleep(self.read_pause)

    def wait(self, *reqs: Req) -> None:
        """Until each of ``reqs`` has its END_REQUEST, or EOF."""
        self.pump(lambda: all(req.end for req in reqs))

    def until_output(self, req: Req) -> None:
        self.pump(lambda: bool(req.stdout) or req.end is not None)

    def close(self, reset: bool = False) -> None:
        if reset and self.sock.fileno() >= 0:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
        self.sock.close()


def check_body_read_to_its_length(address: str, path: str) -> None:
    """POST a body (with its CONTENT_LENGTH) to the echo app at ``path`` as mod_fcgid and
    HAProxy send an HTTP/2 client's upload: an empty STDIN record before it and amid it, and
    the empty record after it only once the response has come. The whole body must be
    echoed without that record, and END_REQUEST follow it."""
    body = bytes(range(256)) * 400
    empty = build_record(RecordType.STDIN, 1)
    half = len(body) // 2
    with FastCGIClient(address, timeout=READ_TIMEOUT) as client:
        client.begin(build_params("POST", path, body_length=len(body)), keep_connection=True)
        client.send_raw(empty + build_record(RecordType.STDIN, 1, body[:half]) + empty)
        client.send_raw(build_record(RecordType.STDIN, 1, body[half:]))
        stdout = b""
        while not stdout.rstrip().endswith(b"}"):  # the echo app's JSON, whole
            event = client.next_event()
            assert isinstance(event, OutputData), event
            stdout += event.data
        client.send_raw(empty)
        while not isinstance(event := client.next_event(), EndRequest):
            pass
    seen = json.loads(stdout.partition(b"\r\n\r\n")[2])
    assert (seen["body_length"], seen["body_sha256"]) == (
        len(body),
        hashlib.sha256(body).hexdigest(),
    )
    assert event.protocol_status == ProtocolStatus.REQUEST_COMPLETE


#: A body cut short: CONTENT_LENGTH promises the first, the web server sends the second.
PROMISED_BYTES, SENT_BYTES = 100_000, 30_000
#: The ways a web server tells that its client left mid-upload.
CUTS = ("abort-request", "connection-closed", "early-end")


def cut_a_body_short(address: str, path: str, *, cut: str, then: str) -> None:
    """POST to ``path`` a body whose CONTENT_LENGTH promises PROMISED_BYTES, send SENT_BYTES
    of it, then do what a web server does when its client leaves mid-upload (``cut``, one
    of CUTS): ABORT_REQUEST (§5.4); close the connection (Apache, Caddy, HAProxy:
    web-servers.md §2); or end STDIN with its empty record and wait for the answer (§6.2,
    cgi-fcgi), which must come, END_REQUEST included, once the body has been silent for the
    server's body_stall_timeout_seconds (at most the default). After an abort or an early
    end the connection then serves GET ``then``, which must answer 200."""
    timeout = READ_TIMEOUT + Config().body_stall_timeout_seconds
    with FastCGIClient(address, timeout=timeout) as client:
        keep = cut != "connection-closed"
        client.begin(build_params("POST", path, body_length=PROMISED_BYTES), keep_connection=keep)
        client.send_event(InputData(1, b"x" * SENT_BYTES))
        if not keep:
            return
        client.send_event(AbortRequest(1) if cut == "abort-request" else InputEnd(1))
        while not isinstance(client.next_event(), EndRequest):
            pass
        assert client.request(build_params("GET", then), keep_connection=True).status == 200
