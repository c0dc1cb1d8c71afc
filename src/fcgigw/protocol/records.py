"""Record headers and record framing (FastCGI 1.0 §3.3): bytes to headers and back."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .constants import (
    FCGI_VERSION_1,
    HEADER_LEN,
    MAX_ALIGNED_CONTENT_LENGTH,
    MAX_CONTENT_LENGTH,
)
from .errors import LocalProtocolError, RemoteProtocolError

# §3.3: version, type, requestId (B1 B0), contentLength (B1 B0), paddingLength, reserved.
_HEADER = struct.Struct(">BBHHBx")
_PADDING = bytes(7)
#: §5.1 FCGI_BeginRequestBody: role, flags, five reserved bytes.
BEGIN_REQUEST_BODY = struct.Struct(">HB5x")
#: §5.5 FCGI_EndRequestBody: appStatus, protocolStatus, three reserved bytes.
END_REQUEST_BODY = struct.Struct(">IB3x")


@dataclass(frozen=True, slots=True)
class RecordHeader:
    """The fixed eight-byte prefix of a record, version already checked."""

    type: int
    request_id: int
    content_length: int
    padding_length: int

    @property
    def record_length(self) -> int:
        """Bytes the whole record occupies on the wire, header included."""
        return HEADER_LEN + self.content_length + self.padding_length


def parse_header(buffer: bytes | bytearray | memoryview, offset: int = 0) -> RecordHeader:
    """Read the header at ``offset``; the caller guarantees HEADER_LEN bytes are there."""
    version, record_type, request_id, content_length, padding_length = _HEADER.unpack_from(
        buffer, offset
    )
    if version != FCGI_VERSION_1:
        # §3.3: this specification documents FCGI_VERSION_1 only; anything else is not FastCGI
        # we can frame, so the connection cannot be trusted past this point.
        raise RemoteProtocolError(f"unsupported FastCGI version {version} (expected 1)")
    return RecordHeader(record_type, request_id, content_length, padding_length)


def _padding_for(content_length: int) -> int:
    # §3.3: "We recommend that records be placed on boundaries that are multiples of eight bytes."
    return -content_length & 7


def build_record(record_type: int, request_id: int, content: bytes = b"") -> bytes:
    """One record carrying ``content`` (at most 65535 bytes), padded to eight bytes."""
    length = len(content)
    if length > MAX_CONTENT_LENGTH:
        raise LocalProtocolError(f"record content of {length} bytes exceeds 65535 (§3.3)")
    padding = _padding_for(length)
    header = _HEADER.pack(FCGI_VERSION_1, record_type, request_id, length, padding)
    return b"".join((header, content, _PADDING[:padding]))


def build_stream_records(record_type: int, request_id: int, data: bytes) -> bytes:
    """Stream ``data`` as as many records as it needs (no terminator; see build_record).

    Full records carry MAX_ALIGNED_CONTENT_LENGTH bytes so they need no padding.
    """
    if len(data) <= MAX_ALIGNED_CONTENT_LENGTH:
        return build_record(record_type, request_id, data) if data else b""
    view = memoryview(data)
    parts = []
    for start in range(0, len(data), MAX_ALIGNED_CONTENT_LENGTH):
        parts.append(
            build_record(
                record_type, request_id, bytes(view[start : start + MAX_ALIGNED_CONTENT_LENGTH])
            )
        )
    return b"".join(parts)
