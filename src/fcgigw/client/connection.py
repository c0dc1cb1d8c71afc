"""A blocking FastCGI client on the protocol core: what health checks, WebTest and our own
tests use to talk to a running server over the real wire."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO

from ..address import Address, parse_address
from ..protocol import (
    ClientConnection,
    ConnectionClosed,
    EndRequest,
    GetValues,
    GetValuesResult,
    InputData,
    InputEnd,
    OutputData,
    RecordType,
    RequestStarted,
    Role,
)
from ..protocol.client_connection import ClientSendable
from ..protocol.events import ClientEvent, NeedData
from .cgi import FastCGIResponse, Params, parse_cgi_response

#: Bytes of STDIN or DATA sent per record batch when streaming a file or an iterable.
SEND_CHUNK_BYTES = 64 * 1024
Body = bytes | Iterable[bytes] | IO[bytes]


class FastCGIError(Exception):
    """The connection failed or the application broke the protocol."""


def connect(address: Address | str, timeout: float | None) -> socket.socket:
    """A connected socket for a TCP or Unix address."""
    if isinstance(address, str):
        address = parse_address(address)
    if address.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.path)
        except OSError:
            sock.close()
            raise
        return sock
    if address.kind != "tcp":
        raise ValueError(f"cannot connect to {address}")
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class FastCGIClient:
    """One connection to a FastCGI application; several requests when kept open."""

    def __init__(self, address: Address | str, timeout: float | None = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self.protocol = ClientConnection()

    def __enter__(self) -> FastCGIClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def sock(self) -> socket.socket:
        """The socket, connected on first use."""
        if self._sock is None:
            self._sock = connect(self.address, self.timeout)
            self.protocol = ClientConnection()
        return self._sock

    def close(self) -> None:
        """Close the connection (a new one is opened by the next request)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- low level: events and raw bytes --------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are: for malformed input and hand-made records."""
        self.sock.sendall(data)

    def send_event(self, event: ClientSendable) -> None:
        """Send one protocol event."""
        self.sock.sendall(self.protocol.send(event))

    def next_event(self) -> ClientEvent:
        """The next event from the application, reading as needed (bounded by the timeout)."""
        while True:
            event = self.protocol.next_event()
            if not isinstance(event, NeedData):
                return event
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            self.protocol.receive_data(data)

    # -- requests ------------------------------------------------------------------------

    def begin(
        self,
        params: Params,
        *,
        role: Role = Role.RESPONDER,
        keep_connection: bool = False,
        request_id: int = 1,
    ) -> None:
        """BEGIN_REQUEST and the whole PARAMS stream."""
        started = RequestStarted(request_id, role, keep_connection, tuple(params))
        self.send_event(started)

    def send_stream(self, request_id: int, body: Body, stream: RecordType) -> None:
        """STDIN or DATA from bytes, an iterable of bytes or a file, then its empty record."""
        for chunk in _chunks(body):
            if chunk:
                self.send_event(InputData(request_id, chunk, stream))
        self.send_event(InputEnd(request_id, stream))

    def request(
        self,
        params: Params,
        stdin: Body = b"",
        *,
        role: Role = Role.RESPONDER,
        data: Body | None = None,
        keep_connection: bool = False,
        request_id: int = 1,
    ) -> FastCGIResponse:
        """One whole request; the response parsed as CGI."""
        self.begin(params, role=role, keep_connection=keep_connection, request_id=request_id)
        if role is not Role.AUTHORIZER:
            self.send_stream(request_id, stdin, RecordType.STDIN)
        if data is not None:
            self.send_stream(request_id, data, RecordType.DATA)
        return self.read_response(request_id, keep_connection=keep_connection)

    def read_response(self, request_id: int, *, keep_connection: bool = False) -> FastCGIResponse:
        """Collect STDOUT and STDERR until END_REQUEST for ``request_id``."""
        stdout, stderr = bytearray(), bytearray()
        for event in self.response_events(request_id):
            if isinstance(event, OutputData):
                (stdout if event.stream is RecordType.STDOUT else stderr).extend(event.data)
            elif isinstance(event, EndRequest):
                if not keep_connection:
                    self.close()
                return _response(bytes(stdout), bytes(stderr), event)
        raise FastCGIError(f"connection closed before END_REQUEST for request {request_id}")

    def response_events(self, request_id: int) -> Iterator[ClientEvent]:
        """This request's events as they arrive, up to its END_REQUEST (others are skipped)."""
        while True:
            event = self.next_event()
            if isinstance(event, ConnectionClosed):
                return
            if getattr(event, "request_id", request_id) == request_id:
                yield event
                if isinstance(event, EndRequest):
                    return

    def stream_response(self, request_id: int = 1) -> Iterator[bytes]:
        """STDOUT bytes of a begun request as they arrive (CGI headers included)."""
        for event in self.response_events(request_id):
            if isinstance(event, OutputData) and event.stream is RecordType.STDOUT:
                yield event.data

    def get_values(self, names: Iterable[bytes]) -> dict[bytes, bytes]:
        """FCGI_GET_VALUES (§4.1): the application's answers for ``names``."""
        self.send_event(GetValues(tuple(names)))
        while True:
            event = self.next_event()
            if isinstance(event, GetValuesResult):
                return dict(event.values)
            if isinstance(event, ConnectionClosed):
                raise FastCGIError("connection closed before GET_VALUES_RESULT")


def _chunks(body: Body) -> Iterator[bytes]:
    if isinstance(body, bytes):
        for start in range(0, len(body), SEND_CHUNK_BYTES):
            yield body[start : start + SEND_CHUNK_BYTES]
    elif hasattr(body, "read"):
        while chunk := body.read(SEND_CHUNK_BYTES):
            yield chunk
    else:
        yield from body


def _response(stdout: bytes, stderr: bytes, end: EndRequest) -> FastCGIResponse:
    response = FastCGIResponse(stdout, stderr, end.app_status, int(end.protocol_status))
    if stdout:
        response.status, response.reason, response.headers, response.body = parse_cgi_response(
            stdout
        )
    return response
