"""In-memory request channels: what an adapter sends, recorded as a web server would see it
(the adapter tests drive real apps through them, without sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from fcgigw.adapters.channel import ClientDisconnected
from fcgigw.protocol import Role

BASE_PARAMS = (
    (b"REQUEST_METHOD", b"GET"),
    (b"SCRIPT_NAME", b"/page"),
    (b"REQUEST_URI", b"/page?x=1"),
    (b"QUERY_STRING", b"x=1"),
    (b"SERVER_NAME", b"localhost"),
    (b"SERVER_PORT", b"80"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"HTTP_HOST", b"example.test"),
)


class MemoryChannel:
    """A RequestChannel that records what the adapter sends."""

    def __init__(
        self,
        params: tuple[tuple[bytes, bytes], ...] = BASE_PARAMS,
        body_chunks: Iterable[bytes] = (),
        role: Role = Role.RESPONDER,
    ) -> None:
        self.request_id = 1
        self.role = role
        self.params = params
        self._input = list(body_chunks)
        self.aborted = False
        self.stdout_writes: list[bytes] = []
        self.stderr = b""
        self.finished: tuple[int, bytes] | None = None
        self.reads = 0

    def read_input(self, size: int) -> bytes:
        self.reads += 1
        if not self._input:
            return b""
        chunk = self._input.pop(0)
        if len(chunk) > size:
            self._input.insert(0, chunk[size:])
            chunk = chunk[:size]
        return chunk

    def send_stdout(self, data: bytes) -> None:
        if self.aborted:
            raise ClientDisconnected("gone")
        self.stdout_writes.append(data)

    def send_stderr(self, data: bytes) -> None:
        self.stderr += data

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        assert self.finished is None, "finish called twice"
        self.finished = (app_status, last_stdout)

    @property
    def stdout(self) -> bytes:
        return b"".join(self.stdout_writes) + (self.finished[1] if self.finished else b"")

    @property
    def app_status(self) -> int:
        assert self.finished is not None
        return self.finished[0]

    def response(self) -> tuple[str, dict[str, str], bytes]:
        head, _, body = self.stdout.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        return headers.pop("Status"), headers, body


class AsyncMemoryChannel(MemoryChannel):
    """The ASGI side: STDIN as awaitables, and a disconnect the test triggers (or the end of
    the response), as the server's channel gives them."""

    def __init__(
        self,
        params: tuple[tuple[bytes, bytes], ...] = BASE_PARAMS,
        body_chunks: Iterable[bytes] = (),
        role: Role = Role.RESPONDER,
    ) -> None:
        super().__init__(params, body_chunks, role)
        self._gone = asyncio.Event()

    async def receive_input(self) -> tuple[bytes, bool]:
        chunk = self.read_input(1 << 30)
        return chunk, bool(self._input)

    async def receive_data(self) -> tuple[bytes, bool]:
        return b"", False

    async def drain(self) -> None:
        return None

    async def wait_disconnected(self) -> None:
        await self._gone.wait()

    def disconnect(self) -> None:
        """The web server went away (EOF, RST or FCGI_ABORT_REQUEST)."""
        self.aborted = True
        self._gone.set()

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        super().finish(app_status, last_stdout)
        self._gone.set()
