"""How the web server matrix (test_matrix.py) sends a request: over HTTP or HTTPS to a web
server, or as the CGI host of cgi-fcgi, which is a CGI program rather than a server. Both
clients answer a request with a Response, and can read a response as it streams.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import unquote_to_bytes

from fcgigw.client.cgi import parse_cgi_response

TIMEOUT = 20
#: http.client refuses a response of over 100 header lines, where browsers take far more:
#: the limits the matrix checks are the servers'.
http.client._MAXHEADERS = 1000  # type: ignore[attr-defined]
#: How long a client waits for a server that sends nothing until the app ends, or after the
#: part of an upload it sends, then leaves.
HANG_UP_AFTER_SECONDS = 0.5
Headers = Sequence[tuple[str, str]]


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), or None."""
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


class Reader(Protocol):
    """A response being received: its status, then its body a line at a time."""

    status: int

    def readline(self) -> bytes: ...

    def read(self) -> bytes: ...


class Client(Protocol):
    def request(
        self,
        method: str,
        target: str,
        headers: Headers = (),
        body: bytes | None = None,
        *,
        chunked: bool = False,
    ) -> Response: ...

    def streaming(self, target: str) -> contextlib.AbstractContextManager[Reader]: ...

    def close(self) -> None: ...


def chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


class HttpClient:
    """HTTP/1.1 on one keep-alive connection (http.client reconnects when the server
    closed it), over TLS when ``tls`` is true. Repeated headers are sent as given."""

    def __init__(self, address: str, *, tls: bool = False, timeout: float = TIMEOUT) -> None:
        host, _, port = address.rpartition(":")
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
            self.connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, int(port), timeout=timeout, context=context
            )
        else:
            self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def _send(
        self, method: str, target: str, headers: Headers, body: bytes | None, chunked: bool
    ) -> http.client.HTTPResponse:
        self.connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            self.connection.putheader(name, value)
        message: bytes | Iterable[bytes] | None = body
        if chunked:
            self.connection.putheader("Transfer-Encoding", "chunked")
            message = chunks(body or b"")
        elif body is not None:
            self.connection.putheader("Content-Length", str(len(body)))
        self.connection.endheaders(message, encode_chunked=chunked)
        return self.connection.getresponse()

    def request(
        self,
        method: str,
        target: str,
        headers: Headers = (),
        body: bytes | None = None,
        *,
        chunked: bool = False,
    ) -> Response:
        response = self._send(method, target, headers, body, chunked)
        return Response(response.status, response.getheaders(), response.read())

    @contextlib.contextmanager
    def streaming(self, target: str) -> Iterator[Reader]:
        response = self._send("GET", target, (), None, False)
        try:
            yield response
        finally:
            response.close()

    def close(self) -> None:
        self.connection.close()


class CgiClient:
    """The CGI host (RFC 3875) of a CGI program such as cgi-fcgi: each request runs it once
    with the request's CGI variables as its environment and the body on stdin, as Apache's
    mod_cgi would with ``ScriptAlias PREFIX PROGRAM``."""

    def __init__(
        self, program: Path, prefix: str, environment: dict[str, str], log_path: Path
    ) -> None:
        self.program, self.prefix, self.environment = program, prefix, environment
        self.log_path = log_path  # the program's stderr: the CGI host's error log

    def environ(
        self, method: str, target: str, headers: Headers, body: bytes | None, chunked: bool
    ) -> dict[str, str]:
        path, _, query = target.partition("?")
        path_info = os.fsdecode(unquote_to_bytes(path[len(self.prefix) :]))  # the raw bytes
        environ = {
            **self.environment,
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "test-cgi-host",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": method,
            "REQUEST_URI": target,
            "SCRIPT_NAME": self.prefix,
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
        }
        if body is not None and not chunked:  # a chunked request has no length to give
            environ["CONTENT_LENGTH"] = str(len(body))
        for name, value in headers:
            key = "HTTP_" + name.upper().replace("-", "_")
            if key == "HTTP_CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key in environ:
                environ[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
            else:
                environ[key] = value
        return environ

    def request(
        self,
        method: str,
        target: str,
        headers: Headers = (),
        body: bytes | None = None,
        *,
        chunked: bool = False,
    ) -> Response:
        with open(self.log_path, "ab") as log:
            result = subprocess.run(
                [str(self.program)],
                input=body or b"",
                env=self.environ(method, target, headers, body, chunked),
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=TIMEOUT,
                check=False,
            )
        status, _, response_headers, response_body = parse_cgi_response(result.stdout)
        return Response(status, response_headers, response_body)

    def cut_upload(self, target: str, promised: int, sent: int) -> None:
        """POST with a CONTENT_LENGTH of ``promised`` bytes and only ``sent`` of them on
        stdin, then its end, as from a client that left mid-upload; the program must end
        (within TIMEOUT) rather than wait for the rest."""
        environ = self.environ("POST", target, (), None, False)
        environ["CONTENT_LENGTH"] = str(promised)
        with open(self.log_path, "ab") as log:
            subprocess.run(
                [str(self.program)],
                input=b"u" * sent,
                env=environ,
                stdout=subprocess.DEVNULL,
                stderr=log,
                timeout=TIMEOUT,
                check=False,
            )

    @contextlib.contextmanager
    def streaming(self, target: str) -> Iterator[Reader]:
        environ = self.environ("GET", target, (), None, False)
        with subprocess.Popen(
            [str(self.program)], env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        ) as process:
            assert process.stdout is not None
            try:
                yield CgiReader(process.stdout)
            finally:
                process.stdout.close()
                process.wait(TIMEOUT)

    def close(self) -> None:
        pass


class CgiReader:
    """A CGI response read from the program's stdout as it arrives."""

    def __init__(self, stdout: IO[bytes]) -> None:
        self.stdout = stdout
        head = b""
        while not head.endswith((b"\r\n\r\n", b"\n\n")):
            line = stdout.readline()
            if not line:
                break
            head += line
        self.status = parse_cgi_response(head)[0]

    def readline(self) -> bytes:
        return self.stdout.readline()

    def read(self) -> bytes:
        return self.stdout.read()


def post_while_reading(
    address: str, target: str, body: bytes, then: str, timeout: float, *, pause: float = 0.0
) -> tuple[Response, Response]:
    """POST ``body`` to ``target`` and read the response while the body is still being sent,
    as browsers do (http.client sends it all first, and would block on an early answer that
    fills the buffers); then GET ``then`` on the same connection, or on a new one if the
    server closed it. With ``pause``, the body's second half goes that many seconds after
    its first, as from a client on a slow link."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        head = f"POST {target} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {len(body)}\r\n\r\n"
        half = len(body) // 2
        parts = (head.encode() + body[:half], body[half:])
        sender = threading.Thread(target=_send_until_refused, args=(sock, parts, pause))
        sender.start()
        try:
            first, closed = _read_response(sock, "POST")
        finally:
            sender.join(timeout)
        if not closed:
            return first, _get(sock, address, then)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        return first, _get(sock, address, then)


def hang_up_mid_response(address: str, target: str, *, streams: bool, timeout: float) -> None:
    """GET ``target``, and close the connection once part of the body came (``streams``) or,
    from a server that sends nothing until the app has finished, after a moment."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
        if not streams:
            time.sleep(HANG_UP_AFTER_SECONDS)
            return
        received = b""
        while not received.partition(b"\r\n\r\n")[2]:  # the head, and some of the body
            data = sock.recv(65536)
            assert data, f"closed before the body: {received!r}"
            received += data


#: A client that leaves mid-upload: the Content-Length it gives, and what it sends of it.
CUT_UPLOAD_PROMISED, CUT_UPLOAD_SENT = 1_000_000, 300_000


def leave_mid_upload(
    address: str,
    target: str,
    promised: int = CUT_UPLOAD_PROMISED,
    sent: int = CUT_UPLOAD_SENT,
    timeout: float = TIMEOUT,
) -> None:
    """POST to ``target`` with a Content-Length of ``promised`` bytes, send ``sent`` of them,
    and close the connection, as a browser does when its user gives up on an upload."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        head = f"POST {target} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {promised}\r\n\r\n"
        sock.sendall(head.encode() + b"u" * sent)
        time.sleep(HANG_UP_AFTER_SECONDS)  # the server passes on what came before it notices


def leave_mid_upload_http2(
    https_address: str,
    target: str,
    promised: int = CUT_UPLOAD_PROMISED,
    sent: int = CUT_UPLOAD_SENT,
) -> None:
    """leave_mid_upload over HTTP/2 (curl, on the server's HTTPS address): ``sent`` of the
    ``promised`` bytes, then curl is killed, which closes the connection under the stream."""
    command = ["curl", "--http2", "--insecure", "--silent", "--request", "POST"]
    command += ["--header", f"Content-Length: {promised}", "--upload-file", "-"]
    process = subprocess.Popen(
        [*command, f"https://{https_address}{target}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None
    with process, process.stdin:
        try:
            process.stdin.write(b"u" * sent)
            process.stdin.flush()
            time.sleep(HANG_UP_AFTER_SECONDS)  # the server passes on what came before it notices
        finally:
            process.kill()


def http2_post(
    address: str,
    target: str,
    parts: Sequence[bytes],
    *,
    length: bool,
    pause: float = 0.0,
    from_file: bool = False,
) -> tuple[str, Response]:
    """POST the body ``parts`` over HTTPS with HTTP/2, ``pause`` seconds apart, with a
    Content-Length if ``length``, else none (HTTP/2 frames a body of unknown length without
    chunked encoding). curl is the client: http.client speaks no HTTP/2. Returns the HTTP
    version curl spoke and the response (its headers left out), or, when none came, status
    0 with curl's error message as the body.

    The parts go down a pipe, and curl ends the stream in a frame of its own once the pipe
    closes. ``from_file`` has curl read the body from a file instead, at a rate that takes
    as long as the pauses, ending the stream with the body's last frame, as browsers do."""
    command = ["curl", "--http2", "--insecure", "--silent", "--show-error", "--request", "POST"]
    command += ["--write-out", "\n%{http_version} %{http_code}"]
    if length and not from_file:
        command += ["--header", f"Content-Length: {sum(map(len, parts))}"]
    with tempfile.NamedTemporaryFile() as file:
        if from_file:
            file.write(b"".join(parts))
            file.flush()
            seconds = max(pause * (len(parts) - 1), 0.1)
            rate = max(1024, int(sum(map(len, parts)) / seconds))
            command += ["--upload-file", file.name, "--limit-rate", str(rate)]
        else:
            command += ["--upload-file", "-"]
        process = subprocess.Popen(
            [*command, f"https://{address}{target}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None
        try:
            for index, part in enumerate([] if from_file else parts):
                if index:
                    time.sleep(pause)
                process.stdin.write(part)
                process.stdin.flush()
        except BrokenPipeError:
            pass  # the server answered without the rest (lighttpd's 411)
        try:
            out, err = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:  # no answer in time
                process.kill()
                process.communicate()
    body, _, tail = out.rpartition(b"\n")
    version, _, status = tail.decode().partition(" ")
    assert status.isdigit(), f"curl: {err.decode(errors='replace')}"
    if status == "000":  # no response: what curl says instead
        return version, Response(0, [], err)
    return version, Response(int(status), [], body)


def refused_upload(address: str, target: str, body: bytes, timeout: float) -> Response:
    """POST ``body`` chunked to ``target`` and read the response while the body is still being
    sent: a server that refuses the body answers and closes without reading it (HAProxy), and
    http.client would fail on the closed connection before it got to the answer."""
    host, _, port = address.rpartition(":")
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in chunks(body))
    head = f"POST {target} HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        data = head.encode() + encoded + b"0\r\n\r\n"
        sender = threading.Thread(target=_send_until_refused, args=(sock, (data,)))
        sender.start()
        try:
            return _read_response(sock, "POST")[0]
        finally:
            sender.join(timeout)


def _send_until_refused(sock: socket.socket, parts: Sequence[bytes], pause: float = 0.0) -> None:
    try:
        for index, part in enumerate(parts):
            if index:
                time.sleep(pause)
            sock.sendall(part)
    except OSError:
        pass  # the server answered and closed without reading the rest: allowed


def _get(sock: socket.socket, address: str, target: str) -> Response:
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
    return _read_response(sock, "GET")[0]


def _read_response(sock: socket.socket, method: str) -> tuple[Response, bool]:
    """A response and whether the server closes the connection after it."""
    response = http.client.HTTPResponse(sock, method=method)
    try:
        response.begin()
        return Response(response.status, response.getheaders(), response.read()), bool(
            response.will_close
        )
    finally:
        response.close()
