"""Incoming byte buffer to whole records: the part both ends of the wire share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Final, Generic, TypeVar

from .constants import FCGI_VERSION_1, HEADER_LEN
from .errors import RemoteProtocolError
from .events import NEED_DATA, ConnectionClosed, NeedData
from .records import HEADER

Event = TypeVar("Event")

# Bound once: looking up a method on a Struct costs about as much as the unpack itself.
_unpack_header: Final = HEADER.unpack_from
#: This module runs compiled (mypyc): there, a header is read faster byte by byte (a native
#: operation each) than by struct, whose tuple of boxed ints is taken apart generically; in
#: the interpreter the one struct call is faster.
_COMPILED: Final = not __file__.endswith(".py")
# Compact the buffer once this many consumed bytes sit at its front (avoids a memmove per record).
_COMPACT_AFTER_BYTES: Final = 64 * 1024


class RecordBuffer:
    """Accumulates received bytes and hands out complete records, padding skipped (§3.3).

    The received ``bytes`` become the buffer as they are once everything before them has been
    taken (a web server writes whole records, so a read often ends on a record boundary), or
    joined to the start of a record that straddles the reads: either way each record's
    content is then one slice out. Only when a record arrives in pieces smaller than what is
    already held of it is it gathered in a bytearray instead, so that no byte is copied over
    and over.
    """

    __slots__ = ("_buffer", "_eof", "_position")

    def __init__(self) -> None:
        self._buffer: bytes | bytearray = b""
        self._position = 0
        self._eof = False

    def feed(self, data: bytes | bytearray) -> None:
        """Add received bytes; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RemoteProtocolError("data received after end of stream")
        buffer = self._buffer
        position = self._position
        held = len(buffer) - position
        if not held:
            # Kept as they are if they are immutable; a caller's bytearray is copied, since the
            # caller may reuse it.
            self._buffer = data if isinstance(data, bytes) else bytes(data)
            self._position = 0
        elif isinstance(buffer, bytes) and held <= len(data):
            # One copy, and linear overall: what is carried over is never longer than the read.
            self._buffer = buffer[position:] + data
            self._position = 0
        elif isinstance(buffer, bytes):
            gathered = bytearray(buffer[position:])
            gathered += data
            self._buffer = gathered
            self._position = 0
        else:
            if position >= _COMPACT_AFTER_BYTES:
                del buffer[:position]
                self._position = 0
            buffer += data

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as records (for flow control)."""
        return len(self._buffer) - self._position

    @property
    def closed(self) -> bool:
        """True once the peer closed and every whole record has been taken."""
        return self._eof and self.buffered_bytes == 0

    def next_record(self) -> tuple[int, int, bytes] | None:
        """Return (type, request_id, content) of the next whole record, or None if incomplete."""
        buffer = self._buffer
        start = self._position
        if len(buffer) - start >= HEADER_LEN:
            # The header's fields straight into locals (records.parse_header's work, without an
            # object per record), declared ints: struct's results are Any, and the compiled
            # build would do every sum, comparison and slice below the generic (slow) way.
            version: int
            record_type: int
            request_id: int
            content_length: int
            padding_length: int
            if _COMPILED and isinstance(buffer, bytes):
                version = buffer[start]
                record_type = buffer[start + 1]
                request_id = buffer[start + 2] << 8 | buffer[start + 3]
                content_length = buffer[start + 4] << 8 | buffer[start + 5]
                padding_length = buffer[start + 6]
            else:
                version, record_type, request_id, content_length, padding_length = _unpack_header(
                    buffer, start
                )
            if version != FCGI_VERSION_1:
                # §3.3: this specification documents FCGI_VERSION_1 only; anything else is not
                # FastCGI we can frame, so the connection cannot be trusted past this point.
                raise RemoteProtocolError(f"unsupported FastCGI version {version} (expected 1)")
            content_start = start + HEADER_LEN
            content_end = content_start + content_length
            record_end = content_end + padding_length
            if record_end <= len(buffer):
                self._position = record_end
                if isinstance(buffer, bytearray):  # a record gathered across reads
                    return record_type, request_id, bytes(buffer[content_start:content_end])
                return record_type, request_id, buffer[content_start:content_end]
        if self._eof and len(buffer) > start:
            raise RemoteProtocolError(
                f"connection closed inside a record ({len(buffer) - start} bytes)"
            )
        return None


class RecordConnection(ABC, Generic[Event]):
    """What both ends share: bytes in, whole records to ``_handle_record``, events out."""

    def __init__(self) -> None:
        self._records = RecordBuffer()
        self._events: deque[Event] = deque()

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes read from the socket; ``b""`` when the peer closed."""
        self._records.feed(data)

    def next_event(self) -> Event | ConnectionClosed | NeedData:
        """The next event, NEED_DATA when more bytes are needed, ConnectionClosed at the end."""
        events = self._events
        while not events:
            record = self._records.next_record()
            if record is None:
                return ConnectionClosed() if self._records.closed else NEED_DATA
            record_type, request_id, content = record  # a plain call, cheaper than *record
            self._handle_record(record_type, request_id, content)
        return events.popleft()

    @abstractmethod
    def _handle_record(self, record_type: int, request_id: int, content: bytes) -> None:
        """Turn one whole record into events (each end knows its own record types)."""
