"""Two things real web servers do that fcgigw mishandles, found with the web server matrix
(test_matrix.py) and replayed here over a raw FastCGI connection, so that each test fails
every time rather than only when the timing is right:

- nginx stops sending the request body as soon as the response has begun, and then waits
  for FCGI_END_REQUEST, while HAProxy goes on sending it at the pace of the client's upload;
- mod_fcgid and Caddy send the whole request body before they read any of the response.

The app is matrixapps' ``/early``: it answers 413 without reading the body. fcgigw now
sends END_REQUEST once the body has gone quiet for a moment after the response, and reads
the body while a write of the response is blocked.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from servers import RunningProcess, run_fcgigw, short_tempdir

pytestmark = pytest.mark.integration

BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 3, 4, 5, 6
RESPONDER = 1
BODY_BYTES = 5 * 1024 * 1024  # more than socket buffers and request_body_memory_bytes hold
RECORD_BYTES = 32768  # what nginx sends per STDIN record (web-servers.md §2)
#: Seconds without progress after which a peer gives up: a correct gateway answers or reads
#: on within milliseconds; a stuck one never does.
WAIT_SECONDS = 1.0
#: A pause in a client's upload, longer than nginx's quiet time and the clock's tick.
CLIENT_PAUSE_SECONDS = 1.0


def record(kind: int, content: bytes = b"") -> bytes:
    """One FastCGI record of request 1 (§3.3)."""
    return struct.pack("!BBHHBx", 1, kind, 1, len(content), 0) + content


def params(pairs: dict[str, str]) -> bytes:
    encoded = b""
    for name, value in pairs.items():
        for text in (name, value):
            size = len(text.encode())
            encoded += bytes([size]) if size < 128 else struct.pack("!I", size | 0x80000000)
        encoded += name.encode() + value.encode()
    return record(PARAMS, encoded) + record(PARAMS)


def request_head(path: str, query: str, keep_conn: bool, software: str) -> bytes:
    """BEGIN_REQUEST and PARAMS for ``POST path?query`` with a BODY_BYTES body, from the
    server whose SERVER_SOFTWARE is ``software``."""
    begin = record(BEGIN_REQUEST, struct.pack("!HB5x", RESPONDER, int(keep_conn)))
    return begin + params(
        {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_LENGTH": str(BODY_BYTES),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": software,
        }
    )


def body_records() -> Iterator[bytes]:
    for _ in range(BODY_BYTES // RECORD_BYTES):
        yield record(STDIN, b"x" * RECORD_BYTES)
    yield record(STDIN)


class Records:
    """The records fcgigw sends, read as they arrive."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer, self.kinds = sock, b"", []

    def read_until(self, kind: int, seconds: float) -> bool:
        """Read until a record of ``kind`` has come, for at most ``seconds`` of silence."""
        while kind not in self.kinds:
            if not select.select([self.sock], [], [], seconds)[0]:
                return False
            data = self.sock.recv(1 << 20)
            if not data:
                return False
            self.buffer += data
            while len(self.buffer) >= 8:
                _, got, _, size, padding = struct.unpack("!BBHHB", self.buffer[:7])
                if len(self.buffer) < 8 + size + padding:
                    break
                self.kinds.append(got)
                self.buffer = self.buffer[8 + size + padding :]
        return True


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def app(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    address = f"unix:{short_tempdir()}/fcgigw.sock"  # small socket buffers, as in the matrix
    with run_fcgigw(f"matrixapps:{request.param}_app", address=address) as server:
        yield server


def connect(app: RunningProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(WAIT_SECONDS * 5)
    sock.connect(app.address.removeprefix("unix:"))
    return sock


@pytest.mark.parametrize("keep_conn", [False, True], ids=["close", "keep-conn"])
def test_peer_that_stops_sending_the_body_once_answered_gets_end_request(
    app: RunningProcess, keep_conn: bool
) -> None:
    """nginx: a record of the body, then (as the app answers at once) no more of it."""
    with connect(app) as sock:
        head = request_head("/early", "size=100", keep_conn, "nginx/1.22.1")
        sock.sendall(head + next(body_records()))
        records = Records(sock)
        if not records.read_until(STDOUT, WAIT_SECONDS):
            # The gateway holds its answer back until the body has ended: nginx sends it all.
            for chunk in body_records():
                sock.sendall(chunk)
        assert records.read_until(END_REQUEST, WAIT_SECONDS), records.kinds


@pytest.mark.parametrize("keep_conn", [False, True], ids=["close", "keep-conn"])
def test_peer_whose_client_pauses_gets_end_request_after_the_whole_body(
    app: RunningProcess, keep_conn: bool
) -> None:
    """HAProxy (Apache, Caddy too): the body goes on after the response, at the pace of the
    client's upload, which pauses for longer than nginx's quiet time. END_REQUEST waits for
    the body's end: HAProxy 2.6 leaves the client's connection hanging if it comes first."""
    body = body_records()
    with connect(app) as sock:
        sock.sendall(request_head("/early", "size=100", keep_conn, "HAProxy") + next(body))
        records = Records(sock)
        assert records.read_until(STDOUT, WAIT_SECONDS), records.kinds
        assert not records.read_until(END_REQUEST, CLIENT_PAUSE_SECONDS), records.kinds
        for chunk in body:
            sock.sendall(chunk)
        assert records.read_until(END_REQUEST, WAIT_SECONDS), records.kinds


class Sender(threading.Thread):
    """Sends the request and its whole body, counting the records that went out."""

    def __init__(self, sock: socket.socket, query: str) -> None:
        super().__init__()
        self.sock, self.query, self.records, self.done = sock, query, 0, threading.Event()

    def run(self) -> None:
        try:
            self.sock.sendall(request_head("/early", self.query, False, "Caddy"))
            for chunk in body_records():
                self.sock.sendall(chunk)
                self.records += 1
            self.done.set()
        except OSError:
            pass  # the test shut the socket under a blocked send: it has failed already

    def stuck(self) -> bool:
        """Whether sending stops making progress before the whole body is out."""
        while not self.done.is_set():
            before = self.records
            if not self.done.wait(WAIT_SECONDS) and self.records == before:
                return True
        return False


def test_peer_that_sends_the_whole_body_first_gets_a_large_response(app: RunningProcess) -> None:
    """mod_fcgid and Caddy: the whole body, and only then the response (4 MiB) is read."""
    with connect(app) as sock:
        sender = Sender(sock, f"size={4 * 1024 * 1024}")
        sender.start()
        try:
            assert not sender.stuck(), "fcgigw stopped reading the body"
            assert Records(sock).read_until(END_REQUEST, WAIT_SECONDS)
        finally:
            sock.shutdown(socket.SHUT_RDWR)  # unblocks the sender if it is stuck
            sender.join()
