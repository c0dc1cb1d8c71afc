"""One request on a threaded connection: its input buffered per stream (spilling to a
temporary file past request_body_memory_bytes), its output written through the connection.
The core decides when END_REQUEST goes; this only holds bytes."""

from __future__ import annotations

from typing import Final, Protocol

from ..adapters.channel import Params
from ..protocol import RecordType, Role
from .buffers import SpillBuffer
from .core import CoreRequest
from .thread_turns import TurnConnection

_STDIN: Final = RecordType.STDIN
_DATA: Final = RecordType.DATA


class ChannelReader(Protocol):
    """Where a channel's input comes from (thread_reader.ConnectionReader)."""

    def read_body(
        self, connection: TurnConnection, channel: ThreadChannel, stream: RecordType, size: int
    ) -> bytes: ...

    def input_waiting(self, connection: TurnConnection) -> bool: ...


class ChannelWriter(Protocol):
    """Where a channel's output goes (thread_writer.ConnectionWriter)."""

    def send_output(
        self, connection: TurnConnection, request: CoreRequest, data: bytes, stream: RecordType
    ) -> None: ...

    def finish(
        self, connection: TurnConnection, request: CoreRequest, app_status: int, last_stdout: bytes
    ) -> None: ...


class ThreadChannel:
    """implements core.RequestHandler (called with the connection's lock held) and the
    adapters' RequestChannel (called by the app's thread)."""

    __slots__ = (
        "_connection",
        "_reader",
        "_writer",
        "inputs",
        "params",
        "request",
        "request_id",
        "role",
        "thread_ident",
    )

    def __init__(
        self,
        connection: TurnConnection,
        reader: ChannelReader,
        writer: ChannelWriter,
        request: CoreRequest,
        memory_limit_bytes: int,
    ) -> None:
        self._connection = connection
        self._reader = reader
        self._writer = writer
        self.request = request
        # Copied, not properties: the adapters read them on every request.
        self.request_id = request.request_id
        self.role = request.role
        self.params: Params = request.params
        # One buffer per input stream of the role (§6): STDIN, and FCGI_DATA for a Filter.
        self.inputs = {_STDIN: SpillBuffer(memory_limit_bytes)}
        if request.role is Role.FILTER:
            self.inputs[_DATA] = SpillBuffer(memory_limit_bytes)
        #: The thread running the app for it, once one does (for the slow log).
        self.thread_ident = 0

    @property
    def aborted(self) -> bool:
        return self.request.aborted

    # -- input, from the core (the connection's lock is held) --------------------------------

    def feed(self, data: bytes, stream: RecordType) -> None:
        self.inputs[stream].append(data)

    def end_input(self, stream: RecordType) -> None:
        """Nothing to do here: the core has recorded it (request.ended), and whoever fed the
        core wakes the readers."""

    def abort(self) -> None:
        """Nothing to do here: whoever fed the core wakes the readers (request.aborted)."""

    def input_pending(self) -> bool:
        return any(len(buffer) for buffer in self.inputs.values()) or self._reader.input_waiting(
            self._connection
        )

    # -- what the adapter uses -----------------------------------------------------------

    def read_input(self, size: int) -> bytes:
        return self._reader.read_body(self._connection, self, _STDIN, size)

    def read_data(self, size: int) -> bytes:
        """FCGI_DATA (Filter role, §6.4); b"" for the other roles."""
        if _DATA not in self.inputs:
            return b""
        return self._reader.read_body(self._connection, self, _DATA, size)

    def send_stdout(self, data: bytes) -> None:
        self._writer.send_output(self._connection, self.request, data, RecordType.STDOUT)

    def send_stderr(self, data: bytes) -> None:
        self._writer.send_output(self._connection, self.request, data, RecordType.STDERR)

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        self._writer.finish(self._connection, self.request, app_status, last_stdout)
        for buffer in self.inputs.values():
            buffer.close()
