"""AsyncRequestChannel on an asyncio connection: STDIN queued per request, output written to
the transport (which buffers), END_REQUEST held back until STDIN has ended (web-servers §2)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from ..adapters.channel import ClientDisconnected, Params
from ..protocol import EndRequest, OutputData, RecordType, RequestStarted, Role

if TYPE_CHECKING:
    from .aio import FastCGIProtocol


class AsyncChannel:
    """One request on a FastCGIProtocol."""

    def __init__(self, protocol: FastCGIProtocol, started: RequestStarted) -> None:
        self._protocol = protocol
        self._started = started
        self._chunks: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._done = asyncio.Event()
        self._pending_end: EndRequest | None = None
        self.stdin_ended = False
        self.aborted = False
        self.finished = False
        self.started_at = time.monotonic()
        self.bytes_sent = 0
        self.status = b""

    @property
    def request_id(self) -> int:
        return self._started.request_id

    @property
    def role(self) -> Role:
        return self._started.role

    @property
    def params(self) -> Params:
        return self._started.params

    # -- input, fed by the protocol --------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.finished:
            return  # the response is out; the rest of the body is read and dropped
        self._chunks.append(data)
        self._protocol.input_buffered(len(data))
        self._wake()

    def end_input(self) -> None:
        self.stdin_ended = True
        self._wake()
        if self._pending_end is not None:
            self._send_end(self._pending_end)

    def abort(self) -> None:
        """ABORT_REQUEST (§5.4) or the connection is gone."""
        self.aborted = True
        self._done.set()
        self._wake()
        if self._pending_end is not None and not self._protocol.closed:
            self._send_end(self._pending_end)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- what the adapter uses -------------------------------------------------------------

    def read_input(self, size: int) -> bytes:
        """Not used by ASGI (it awaits receive_input); present for the RequestChannel shape."""
        raise NotImplementedError("ASGI requests read with receive_input()")

    async def receive_input(self) -> tuple[bytes, bool]:
        while not self._chunks and not self.stdin_ended and not self.aborted:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self._chunks:
            chunk = self._chunks.popleft()
            self._protocol.input_consumed(len(chunk))
            return chunk, bool(self._chunks) or not self.stdin_ended
        return b"", False

    async def drain(self) -> None:
        await self._protocol.drain()

    async def wait_disconnected(self) -> None:
        await self._done.wait()

    def send_stdout(self, data: bytes) -> None:
        if self.aborted or self._protocol.closed:
            raise ClientDisconnected(f"request {self.request_id}: the web server went away")
        self._note_output(data)
        self._protocol.write(self._protocol.connection.send(OutputData(self.request_id, data)))

    def send_stderr(self, data: bytes) -> None:
        if not (self.aborted or self.finished or self._protocol.closed):
            event = OutputData(self.request_id, data, RecordType.STDERR)
            self._protocol.write(self._protocol.connection.send(event))

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        """The rest of STDOUT now; END_REQUEST once STDIN has ended (h2o 2.2 aborts if it
        arrives earlier, and closing with unread input sends an RST)."""
        if self.finished:
            return
        self.finished = True
        self._done.set()
        if last_stdout and not self.aborted and not self._protocol.closed:
            self._note_output(last_stdout)
            self._protocol.write(
                self._protocol.connection.send(OutputData(self.request_id, last_stdout))
            )
        dropped = sum(map(len, self._chunks))
        self._chunks.clear()
        self._protocol.input_consumed(dropped)
        end = EndRequest(self.request_id, app_status)
        if self.stdin_ended or self.aborted:
            self._send_end(end)
        else:
            self._pending_end = end

    def _send_end(self, end: EndRequest) -> None:
        self._pending_end = None
        if not self._protocol.closed:
            self._protocol.write(self._protocol.connection.send(end))
        self._protocol.request_done(self)

    def _note_output(self, data: bytes) -> None:
        if not self.bytes_sent and data.startswith(b"Status: "):
            self.status = data[8:11]
        self.bytes_sent += len(data)
