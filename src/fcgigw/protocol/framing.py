"""Incoming byte buffer to whole records: the part both ends of the wire share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Generic, TypeVar

from .constants import HEADER_LEN
from .errors import RemoteProtocolError
from .events import NEED_DATA, ConnectionClosed, NeedData
from .records import parse_header

Event = TypeVar("Event")

# Compact the buffer once this many consumed bytes sit at its front (avoids a memmove per record).
_COMPACT_AFTER_BYTES = 64 * 1024


class RecordBuffer:
    """Accumulates received bytes and hands out complete records, padding skipped (§3.3)."""

    __slots__ = ("_buffer", "_eof", "_position")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0
        self._eof = False

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RemoteProtocolError("data received after end of stream")
        if self._position >= _COMPACT_AFTER_BYTES:
            del self._buffer[: self._position]
            self._position = 0
        self._buffer += data

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
        start = self._position
        available = len(self._buffer) - start
        if available < HEADER_LEN:
            self._check_not_truncated(available)
            return None
        header = parse_header(self._buffer, start)
        if available < header.record_length:
            self._check_not_truncated(available)
            return None
        content_start = start + HEADER_LEN
        content = bytes(self._buffer[content_start : content_start + header.content_length])
        self._position = start + header.record_length
        return header.type, header.request_id, content

    def _check_not_truncated(self, available: int) -> None:
        if self._eof and available:
            raise RemoteProtocolError(f"connection closed inside a record ({available} bytes)")


class RecordConnection(ABC, Generic[Event]):
    """What both ends share: bytes in, whole records to ``_handle_record``, events out."""

    def __init__(self) -> None:
        self._records = RecordBuffer()
        self._events: deque[Event] = deque()

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` when the peer closed."""
        self._records.feed(data)

    def next_event(self) -> Event | ConnectionClosed | NeedData:
        """The next event, NEED_DATA when more bytes are needed, ConnectionClosed at the end."""
        while not self._events:
            record = self._records.next_record()
            if record is None:
                return ConnectionClosed() if self._records.closed else NEED_DATA
            self._handle_record(*record)
        return self._events.popleft()

    @abstractmethod
    def _handle_record(self, record_type: int, request_id: int, content: bytes) -> None:
        """Turn one whole record into events (each end knows its own record types)."""
