"""RequestChannel on a real connection: input buffered per request, output as records."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..adapters.channel import ClientDisconnected
from ..adapters.response import timed_out
from ..protocol import OutputData, RecordType, RequestStarted, Role
from .buffers import SpillBuffer
from .core import INPUT_QUIET_SECONDS

if TYPE_CHECKING:
    from .connection import ServedConnection


logger = logging.getLogger("fcgigw.server")


class SocketChannel:
    """One request on a ServedConnection (implements adapters.channel.RequestChannel)."""

    def __init__(self, connection: ServedConnection, started: RequestStarted) -> None:
        self._connection = connection
        self.request_id = started.request_id
        self.role = started.role
        self.params = started.params
        self.keep_connection = started.keep_connection
        memory_limit = connection.config.request_body_memory_bytes
        # One buffer per input stream of the role (§6): STDIN, and FCGI_DATA for a Filter.
        self.inputs = {RecordType.STDIN: SpillBuffer(memory_limit)}
        if started.role is Role.FILTER:
            self.inputs[RecordType.DATA] = SpillBuffer(memory_limit)
        self.ended: set[RecordType] = set()
        self.discard_input = False
        self.aborted = False
        self.finished = False
        self.started_at = time.monotonic()
        self.bytes_sent = 0
        self.status = b""

    # -- input ---------------------------------------------------------------------------

    @property
    def input_ended(self) -> bool:
        """Every input stream of the role has had its empty record."""
        return len(self.ended) == len(self.inputs)

    def add_input(self, data: bytes, stream: RecordType = RecordType.STDIN) -> None:
        """Called by whichever thread reads the socket (connection lock held)."""
        if not self.discard_input:
            self.inputs[stream].append(data)

    def read_input(self, size: int) -> bytes:
        """Up to ``size`` bytes of STDIN; reads the socket itself when nobody else does."""
        return self._read(RecordType.STDIN, size)

    def read_data(self, size: int) -> bytes:
        """Up to ``size`` bytes of FCGI_DATA (Filter role, §6.4); b"" for other roles."""
        if RecordType.DATA not in self.inputs:
            return b""
        return self._read(RecordType.DATA, size)

    def _read(self, stream: RecordType, size: int) -> bytes:
        buffer = self.inputs[stream]
        connection = self._connection
        while True:
            with connection.lock:
                while True:
                    if len(buffer):
                        return buffer.read(size)
                    if stream in self.ended or self.aborted:
                        return b""
                    if connection.reader.acquire(blocking=False):
                        break
                    connection.wait()
            connection.pump_holding_reader()

    def _drain_input(self) -> None:
        """Read every input stream through its empty record before END_REQUEST. With
        KEEP_CONN, h2o 2.2 aborts if END_REQUEST arrives while it still writes STDIN
        (web-servers.md §2); without, closing with unread input makes the kernel send RST,
        which can destroy the response before the web server reads it. Servers send the whole
        body anyway (§2); a Filter's DATA follows its STDIN (§6.4)."""
        self.discard_input = True
        for stream, buffer in self.inputs.items():
            buffer.close()
            while True:
                self._connection.take_available_input()
                if stream in self.ended or self.aborted:
                    break
                if not self._connection.wait_for_input(INPUT_QUIET_SECONDS):
                    # nginx stops sending the body once the response has begun, possibly in
                    # the middle of a record, and waits for END_REQUEST: end without the rest.
                    return

    # -- output --------------------------------------------------------------------------

    def send_stdout(self, data: bytes) -> None:
        if self.aborted:
            raise ClientDisconnected(f"request {self.request_id} was aborted")
        self._note_output(data)
        self._connection.send_event(OutputData(self.request_id, data))

    def send_stderr(self, data: bytes) -> None:
        if self.aborted or self.finished:
            return
        try:
            self._connection.send_event(OutputData(self.request_id, data, RecordType.STDERR))
        except ClientDisconnected:
            # wsgi.errors must not raise because the web server left.
            pass

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        """Send the rest and END_REQUEST (§5.5); never raises for a departed web server."""
        if self.finished:
            return
        if not self.input_ended and not self.aborted:
            self._drain_input()
        self.finished = True
        self._note_output(last_stdout)
        self._connection.end_request(self, last_stdout, app_status)
        for buffer in self.inputs.values():
            buffer.close()

    def time_out(self) -> None:
        """Called by the watchdog when the request ran past request_timeout_seconds: the web
        server gets a 504 (or the cut response) and END_REQUEST now, without waiting for the
        rest of the body; whatever the app writes later raises ClientDisconnected."""
        if self.finished or self.aborted:
            return
        self.discard_input = True
        self.ended.update(self.inputs)  # no draining from the watchdog's thread
        seconds = self._connection.config.request_timeout_seconds
        consequence = "its thread stays busy until the app returns"
        timed_out(self, seconds, consequence, headers_sent=self.bytes_sent > 0)
        self.aborted = True

    def _note_output(self, data: bytes) -> None:
        if not self.bytes_sent and data.startswith(b"Status: "):
            # Every response fcgigw writes starts with its Status line (response.header_block).
            self.status = data[8:11]
        self.bytes_sent += len(data)
