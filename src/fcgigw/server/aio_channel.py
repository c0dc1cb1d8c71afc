"""AsyncRequestChannel on an asyncio connection: input queued per request and stream, output
written to the transport (which buffers), END_REQUEST held back until the input has ended
(web-servers.md §2).

Every request makes one of these, so it keeps to slots and plain attributes, makes its
disconnect Event only when an app waits for it, and ends the response with one buffer from
``ServerConnection.end_response`` (the last STDOUT and END_REQUEST in one transport write).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from ..adapters.channel import ClientDisconnected, Params
from ..protocol import EndRequest, OutputData, RecordType, RequestStarted, Role
from .lifecycle import INPUT_QUIET_SECONDS

if TYPE_CHECKING:
    from .aio import FastCGIProtocol

# Enum members as module globals: an attribute of an enum class is a metaclass lookup.
_STDIN = RecordType.STDIN
_DATA = RecordType.DATA
_STDERR = RecordType.STDERR
_FILTER = Role.FILTER


class AsyncChannel:
    """One request on a FastCGIProtocol."""

    __slots__ = (
        "_done",
        "_pending_end",
        "_protocol",
        "_queues",
        "_quiet_timer",
        "_waiter",
        "aborted",
        "bytes_sent",
        "ended",
        "finished",
        "params",
        "request_id",
        "role",
        "started_at",
        "status",
        "task",
    )

    def __init__(self, protocol: FastCGIProtocol, started: RequestStarted) -> None:
        self._protocol = protocol
        self.request_id = started.request_id
        self.role = started.role
        self.params: Params = started.params
        # One queue per input stream of the role (§6): STDIN, and FCGI_DATA for a Filter.
        self._queues: dict[RecordType, deque[bytes]] = {_STDIN: deque()}
        if started.role is _FILTER:
            self._queues[_DATA] = deque()
        self.ended: set[RecordType] = set()
        self._waiter: asyncio.Future[None] | None = None
        #: Made by the first wait_disconnected() that has to wait (most requests never do).
        self._done: asyncio.Event | None = None
        self._pending_end: EndRequest | None = None
        self._quiet_timer: asyncio.TimerHandle | None = None
        self.aborted = False
        self.finished = False
        self.started_at = time.monotonic()
        self.bytes_sent = 0
        self.status = b""
        #: The task running the app for this request (set by the server).
        self.task: asyncio.Task[None] | None = None

    # -- input, fed by the protocol --------------------------------------------------------

    @property
    def input_ended(self) -> bool:
        """Every input stream of the role has had its empty record."""
        return len(self.ended) == len(self._queues)

    def feed(self, data: bytes, stream: RecordType = _STDIN) -> None:
        if self.finished:
            if self._pending_end is not None:
                self._wait_for_input_end()  # still sending: keep holding END_REQUEST
            return  # the response is out; the rest of the input is read and dropped
        self._queues[stream].append(data)
        self._protocol.input_buffered(len(data))
        self._wake()

    def end_input(self, stream: RecordType = _STDIN) -> None:
        self.ended.add(stream)
        if self._waiter is not None:
            self._wake()
        if self._pending_end is not None and self.input_ended:
            self._send_end(self._pending_end)

    def abort(self) -> None:
        """ABORT_REQUEST (§5.4) or the connection is gone."""
        self.aborted = True
        self._set_done()
        self._wake()
        if self._pending_end is not None and not self._protocol.closed:
            self._send_end(self._pending_end)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _set_done(self) -> None:
        if self._done is not None:
            self._done.set()

    # -- what the adapter uses -------------------------------------------------------------

    def read_input(self, size: int) -> bytes:
        """Not used by ASGI (it awaits receive_input); present for the RequestChannel shape."""
        raise NotImplementedError("ASGI requests read with receive_input()")

    def read_data(self, size: int) -> bytes:
        """Not used by ASGI (it awaits receive_data); present for the RequestChannel shape."""
        raise NotImplementedError("ASGI requests read with receive_data()")

    async def receive_input(self) -> tuple[bytes, bool]:
        return await self._receive(_STDIN)

    async def receive_data(self) -> tuple[bytes, bool]:
        if _DATA not in self._queues:
            return b"", False
        return await self._receive(_DATA)

    async def _receive(self, stream: RecordType) -> tuple[bytes, bool]:
        """The next bytes of ``stream`` and whether more follow."""
        chunks = self._queues[stream]
        while not chunks and stream not in self.ended and not self.aborted:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if chunks:
            chunk = chunks.popleft()
            self._protocol.input_consumed(len(chunk))
            return chunk, bool(chunks) or stream not in self.ended
        return b"", False

    async def drain(self) -> None:
        await self._protocol.drain()

    async def wait_disconnected(self) -> None:
        if self.aborted or self.finished:
            return
        if self._done is None:
            self._done = asyncio.Event()
        await self._done.wait()

    def send_stdout(self, data: bytes) -> None:
        protocol = self._protocol
        if self.aborted or protocol.closed:
            raise ClientDisconnected(f"request {self.request_id}: the web server went away")
        self._note_output(data)
        protocol.write(protocol.connection.send(OutputData(self.request_id, data)))

    def send_stderr(self, data: bytes) -> None:
        if not (self.aborted or self.finished or self._protocol.closed):
            event = OutputData(self.request_id, data, _STDERR)
            self._protocol.write(self._protocol.connection.send(event))

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        """The rest of STDOUT now; END_REQUEST once the input has ended (h2o 2.2 aborts if it
        arrives earlier, and closing with unread input sends an RST)."""
        if self.finished:
            return
        self.finished = True
        self._set_done()
        protocol = self._protocol
        if last_stdout and not (self.aborted or protocol.closed):
            self._note_output(last_stdout)
        else:
            last_stdout = b""
        for chunks in self._queues.values():
            if chunks:
                protocol.input_consumed(sum(map(len, chunks)))
                chunks.clear()
        if self.input_ended or self.aborted:
            # The usual end: the last STDOUT and END_REQUEST in one write.
            if not protocol.closed:
                protocol.write(
                    protocol.connection.end_response(self.request_id, last_stdout, app_status)
                )
            protocol.request_done(self)
            return
        if last_stdout:
            protocol.write(protocol.connection.send(OutputData(self.request_id, last_stdout)))
        self._pending_end = EndRequest(self.request_id, app_status)
        self._wait_for_input_end()

    def _wait_for_input_end(self) -> None:
        """Hold END_REQUEST while the web server is still sending the body (h2o 2.2 aborts
        otherwise), but not once it has stopped: nginx stops sending the body when the
        response begins and waits for END_REQUEST (the matrix found it hanging)."""
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
        loop = asyncio.get_running_loop()
        self._quiet_timer = loop.call_later(INPUT_QUIET_SECONDS, self._input_went_quiet)

    def _input_went_quiet(self) -> None:
        self._quiet_timer = None
        if self._pending_end is not None and not self._protocol.closed:
            self._send_end(self._pending_end)

    def _send_end(self, end: EndRequest) -> None:
        self._pending_end = None
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
            self._quiet_timer = None
        if not self._protocol.closed:
            self._protocol.write(self._protocol.connection.send(end))
        self._protocol.request_done(self)

    def _note_output(self, data: bytes) -> None:
        if not self.bytes_sent and data.startswith(b"Status: "):
            self.status = data[8:11]
        self.bytes_sent += len(data)
