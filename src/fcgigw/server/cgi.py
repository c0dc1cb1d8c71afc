"""The CGI fallback: one request from the environment and stdin, its response on stdout.

A dispatch.fcgi calling ``fcgigw.serve(app)`` may be run by mod_fcgid (fd 0 a listening
socket, FastCGI §2.2), by plain mod_cgi, or from a shell. In the last two the process *is*
the request (RFC 3875): the params are the environment (§4.1), the body is on stdin (§4.2) and
the response goes to stdout (§6). The same adapters run it through a RequestChannel over those
fds; the shared ResponseWriter already writes a CGI response ("Status:" line, headers, body),
so nothing else changes, and the script works everywhere unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from ..adapters.asgi import run_asgi
from ..adapters.channel import INPUT_CUT_SHORT, ClientDisconnected, Params
from ..adapters.wsgi import run_wsgi
from ..config import Config
from ..protocol import Role
from .listeners import listening_on_fd0, systemd_fd_count
from .logs import log_access

logger = logging.getLogger("fcgigw.server")

#: Variables that only a CGI invocation sets (RFC 3875 §4.1.4, §4.1.12).
CGI_MARKERS = ("GATEWAY_INTERFACE", "REQUEST_METHOD")
#: Bytes read from stdin at a time for an ASGI app's http.request messages.
CGI_READ_CHUNK_BYTES = 64 * 1024


def started_as_cgi(config: Config, environ: Mapping[str, str]) -> bool:
    """True when this process is a CGI request: no --bind, CGI variables in the environment,
    and neither a listening socket on fd 0 nor systemd sockets to serve instead."""
    if config.bind or not any(name in environ for name in CGI_MARKERS):
        return False
    return not listening_on_fd0() and not systemd_fd_count(environ)


def _body_length(environ: Mapping[bytes, bytes], stdin_fd: int) -> int | None:
    """RFC 3875 §4.2: read CONTENT_LENGTH bytes, no more (the server need not send EOF).
    Without a valid one (mod_cgi streaming a chunked body) read to EOF, unless stdin is a
    terminal: someone trying the script by hand, whose request has no body."""
    text = environ.get(b"CONTENT_LENGTH", b"").strip()
    if text.isdigit():
        return int(text)
    return 0 if os.isatty(stdin_fd) else None


class CGIChannel:
    """One CGI request (implements adapters.asgi.AsyncRequestChannel): stdin in, stdout out,
    stderr to the web server's error log. Reads and writes block: there is one request."""

    request_id = 1
    role = Role.RESPONDER  # RFC 3875 has no other role

    def __init__(
        self, environ: Mapping[bytes, bytes], stdin_fd: int, stdout_fd: int, stderr_fd: int
    ) -> None:
        self.params: Params = tuple(environ.items())
        self._stdin_fd, self._stdout_fd, self._stderr_fd = stdin_fd, stdout_fd, stderr_fd
        self._remaining = _body_length(environ, stdin_fd)
        self._input_ended = self._remaining == 0
        self.aborted = False
        self.finished = False
        self.app_status = 0
        self.app_call: Awaitable[None] | None = None  # the protocol's; CGI has no slow log
        self._done = asyncio.Event()  # Python >= 3.10 binds it to the loop on first use
        # What the access log reads (server.logs.Logged).
        self.started_at = time.monotonic()
        self.status = b""
        self.bytes_sent = 0

    # -- input ---------------------------------------------------------------------------

    def read_input(self, size: int) -> bytes:
        if self._input_ended:
            return b""
        if self._remaining is not None:
            size = min(size, self._remaining)
        data = os.read(self._stdin_fd, size)
        if self._remaining is not None:
            if not data:  # EOF before CONTENT_LENGTH bytes: the client did not send them all
                self._input_ended = self.aborted = True
                raise ClientDisconnected(INPUT_CUT_SHORT)
            self._remaining -= len(data)
        if not data or self._remaining == 0:
            self._input_ended = True
        return data

    def read_data(self, size: int) -> bytes:
        return b""  # FCGI_DATA exists only for the Filter role (§6.4)

    async def receive_input(self) -> tuple[bytes, bool]:
        try:
            data = await asyncio.to_thread(self.read_input, CGI_READ_CHUNK_BYTES)
        except ClientDisconnected:
            return b"", False  # aborted: the adapter gives the app http.disconnect
        return data, not self._input_ended

    async def receive_data(self) -> tuple[bytes, bool]:
        return b"", False

    # -- output --------------------------------------------------------------------------

    def send_stdout(self, data: bytes) -> None:
        if self.aborted:
            raise ClientDisconnected("the web server closed stdout")
        if not self.bytes_sent and data.startswith(b"Status: "):
            self.status = data[8:11]  # the ResponseWriter always starts with it
        self.bytes_sent += len(data)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._stdout_fd, view)
                view = view[written:]
        except OSError as error:
            self.aborted = True
            raise ClientDisconnected(f"writing the response: {error.strerror}") from None

    def send_stderr(self, data: bytes) -> None:
        try:
            os.write(self._stderr_fd, data)
        except OSError:
            pass  # wsgi.errors must not raise because the error log went away

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        if self.finished:
            return
        self.finished = True
        self.app_status = app_status
        if last_stdout and not self.aborted:
            try:
                self.send_stdout(last_stdout)
            except ClientDisconnected:
                logger.info("the web server went away before the end of the response")
        self._done.set()

    async def drain(self) -> None:
        """Writes block until the pipe took them: nothing is ever buffered here."""

    async def wait_disconnected(self) -> None:
        if not self.aborted:
            await self._done.wait()


def serve_cgi(app: Any, interface: str, config: Config) -> None:
    """Run the one request of this CGI invocation through the WSGI or ASGI adapter (ASGI
    lifespan is skipped: there is no "before the first request" in a one-request process)."""
    sys.stdout.flush()
    response_fd = os.dup(1)
    # From here the app's print() goes to fd 2, the web server's error log, instead of
    # corrupting the response.
    os.dup2(2, 1)
    try:
        channel = CGIChannel(os.environb, 0, response_fd, 2)
        if interface == "asgi":
            asyncio.run(run_asgi(app, channel, root_path=config.root_path))
        else:
            run_wsgi(app, channel, root_path=config.root_path, run_once=True)
    finally:
        os.close(response_fd)
    if config.access_log:
        log_access(channel)
