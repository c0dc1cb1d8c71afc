"""One request on an asyncio connection: its input queued per stream, its output written to
the transport (which buffers). The core decides when END_REQUEST goes; this only moves bytes
and wakes the app's awaits.

Every request makes one of these, so it keeps to slots and plain attributes, and makes its
disconnect Event only when an app waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable
from typing import Final, Protocol

from ..adapters.channel import Params
from ..protocol import RecordType, Role
from .buffers import take_front
from .core import ConnectionCore, CoreRequest

_STDIN: Final = RecordType.STDIN
_DATA: Final = RecordType.DATA
_monotonic: Final = time.monotonic
#: Body chunks that wait for the app are handed over as one message of up to this many
#: bytes: a web server's body comes in records of 8 KiB or less, and each ASGI message costs
#: the app as much as its copy would.
MESSAGE_BYTES: Final = 64 * 1024


class ChannelTransport(Protocol):
    """What a channel needs of its connection (aio_connection.FastCGIProtocol)."""

    core: ConnectionCore

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def input_buffered(self, size: int) -> None: ...

    def input_consumed(self, size: int) -> None: ...

    @property
    def reading_paused(self) -> bool: ...

    def after_core(self) -> None: ...

    def new_future(self) -> asyncio.Future[None]: ...


class AsyncChannel:
    """One request on a FastCGIProtocol (implements core.RequestHandler and the ASGI
    adapter's AsyncRequestChannel)."""

    __slots__ = (
        "_data",
        "_done",
        "_stdin",
        "_transport",
        "_waiter",
        "app_call",
        "request",
        "task",
    )

    def __init__(self, transport: ChannelTransport, request: CoreRequest) -> None:
        self._transport = transport
        self.request = request
        # A queue per input stream (§6): STDIN, and FCGI_DATA for a Filter; each made when
        # input comes or the app reads (a GET's app often never does).
        self._stdin: deque[bytes] | None = None
        self._data: deque[bytes] | None = None
        self._waiter: asyncio.Future[None] | None = None
        #: Made by the first wait_disconnected() that has to wait (most requests never do).
        self._done: asyncio.Event | None = None
        #: The task running the app for this request (set by the server).
        self.task: asyncio.Task[None] | None = None
        #: The app's coroutine for it, once called (for the slow log).
        self.app_call: Awaitable[None] | None = None

    # -- what the access log and the adapter read ------------------------------------------

    @property
    def request_id(self) -> int:
        return self.request.request_id

    @property
    def role(self) -> Role:
        return self.request.role

    @property
    def params(self) -> Params:
        return self.request.params

    @property
    def aborted(self) -> bool:
        return self.request.aborted

    @property
    def finished(self) -> bool:
        return self.request.finished

    # -- input, from the core --------------------------------------------------------------

    def feed(self, data: bytes, stream: RecordType) -> None:
        self._queue(stream).append(data)
        self._transport.input_buffered(len(data))
        self._wake()

    def end_input(self, stream: RecordType) -> None:
        """The core has recorded the stream's end (request.ended): wake a reader to see it."""
        self._wake()

    def abort(self) -> None:
        if self._done is not None:
            self._done.set()
        self._wake()

    def input_pending(self) -> bool:
        """Unread input in the queues, or in the socket while reading is paused."""
        return bool(self._stdin) or bool(self._data) or self._transport.reading_paused

    def _queue(self, stream: RecordType) -> deque[bytes]:
        if stream is _STDIN:
            if self._stdin is None:
                self._stdin = deque()
            return self._stdin
        if self._data is None:
            self._data = deque()
        return self._data

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

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
        if self.request.role is not Role.FILTER:
            return b"", False
        return await self._receive(_DATA)

    async def _receive(self, stream: RecordType) -> tuple[bytes, bool]:
        """The next bytes of ``stream`` and whether more follow."""
        chunks = self._queue(stream)
        request = self.request
        while not chunks and stream not in request.ended and not request.aborted:
            self._waiter = self._transport.new_future()
            await self._waiter
        if chunks:
            chunk = take_front(chunks, MESSAGE_BYTES)
            self._transport.input_consumed(len(chunk))
            return chunk, bool(chunks) or stream not in request.ended
        return b"", False

    async def drain(self) -> None:
        await self._transport.drain()

    async def wait_disconnected(self) -> None:
        if self.request.aborted or self.request.finished:
            return
        if self._done is None:
            self._done = asyncio.Event()
        await self._done.wait()

    def send_stdout(self, data: bytes) -> None:
        transport = self._transport
        transport.write(self.request.output(data))

    def send_stderr(self, data: bytes) -> None:
        transport = self._transport
        output = self.request.error_output(data)
        if output:
            transport.write(output)

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        """The rest of STDOUT, and END_REQUEST when the core says it may go."""
        transport = self._transport
        data = transport.core.finish(self.request, app_status, last_stdout, _monotonic())
        if self._done is not None:
            self._done.set()
        for chunks in (self._stdin, self._data):
            if chunks:
                transport.input_consumed(sum(map(len, chunks)))
                chunks.clear()
        if data:
            transport.write(data)
        transport.after_core()
