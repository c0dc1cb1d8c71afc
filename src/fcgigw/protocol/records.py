"""Record headers and record framing (FastCGI 1.0 §3.3): bytes to headers and back."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .constants import (
    FCGI_END_REQUEST,
    FCGI_STDERR,
    FCGI_STDOUT,
    FCGI_VERSION_1,
    HEADER_LEN,
    MAX_ALIGNED_CONTENT_LENGTH,
    MAX_CONTENT_LENGTH,
)
from .errors import LocalProtocolError, RemoteProtocolError

#: §3.3: version, type, requestId (B1 B0), contentLength (B1 B0), paddingLength, reserved.
HEADER: Final = struct.Struct(">BBHHBx")
#: §3.3 recommends eight-byte boundaries: the padding for each content length modulo eight.
_PADDINGS: Final = tuple(bytes(length) for length in range(8))
#: §5.1 FCGI_BeginRequestBody: role, flags, five reserved bytes.
BEGIN_REQUEST_BODY: Final = struct.Struct(">HB5x")
#: §5.5 FCGI_EndRequestBody: appStatus, protocolStatus, three reserved bytes.
END_REQUEST_BODY: Final = struct.Struct(">IB3x")
_MAX_APP_STATUS: Final = 0xFFFFFFFF
#: §6.1's end of a response in one pack: the empty STDOUT record, then END_REQUEST and its
#: body (eight bytes: no padding).
_END_OF_RESPONSE: Final = struct.Struct(">BBHHBx BBHHBx IB3x")
#: The same with the empty STDERR record that ends a STDERR stream that was used.
_END_OF_RESPONSE_WITH_STDERR: Final = struct.Struct(">BBHHBx BBHHBx BBHHBx IB3x")
# Bound once for the per-response paths: looking up a method on a Struct costs about as much as
# a small pack.
_pack_header: Final = HEADER.pack
_pack_end_of_response: Final = _END_OF_RESPONSE.pack
_pack_end_of_response_with_stderr: Final = _END_OF_RESPONSE_WITH_STDERR.pack


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
    """Read the header at ``offset``; the caller guarantees HEADER_LEN bytes are there.

    (RecordBuffer reads its headers into locals instead: no object per received record.)
    """
    version, record_type, request_id, content_length, padding_length = HEADER.unpack_from(
        buffer, offset
    )
    if version != FCGI_VERSION_1:
        # §3.3: this specification documents FCGI_VERSION_1 only.
        raise RemoteProtocolError(f"unsupported FastCGI version {version} (expected 1)")
    return RecordHeader(record_type, request_id, content_length, padding_length)


def build_record(record_type: int, request_id: int, content: bytes = b"") -> bytes:
    """One record carrying ``content`` (at most 65535 bytes), padded to eight bytes."""
    length = len(content)
    if length > MAX_CONTENT_LENGTH:
        raise LocalProtocolError(f"record content of {length} bytes exceeds 65535 (§3.3)")
    # §3.3: "We recommend that records be placed on boundaries that are multiples of eight bytes."
    padding = -length & 7
    header = HEADER.pack(FCGI_VERSION_1, record_type, request_id, length, padding)
    return b"".join((header, content, _PADDINGS[padding]))


def build_stream_records(record_type: int, request_id: int, data: bytes) -> bytes:
    """Stream ``data`` as as many records as it needs (no terminator; see build_record).

    Full records carry MAX_ALIGNED_CONTENT_LENGTH bytes so they need no padding. The data is
    copied once, into the result: the records' contents are views of it until then.
    """
    length = len(data)
    if length <= MAX_ALIGNED_CONTENT_LENGTH:
        # The usual response chunk fits one record: build it here, without build_record's call.
        if not length:
            return b""
        padding = -length & 7
        header = _pack_header(FCGI_VERSION_1, record_type, request_id, length, padding)
        return b"".join((header, data, _PADDINGS[padding]))
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    for start in range(0, length, MAX_ALIGNED_CONTENT_LENGTH):
        content = view[start : start + MAX_ALIGNED_CONTENT_LENGTH]
        padding = -len(content) & 7
        header = _pack_header(FCGI_VERSION_1, record_type, request_id, len(content), padding)
        parts += (header, content, _PADDINGS[padding])
    return b"".join(parts)


def check_app_status(app_status: int) -> None:
    """§5.5: appStatus is four bytes; anything else is the application's mistake."""
    if not 0 <= app_status <= _MAX_APP_STATUS:
        raise LocalProtocolError(f"appStatus {app_status} does not fit in four bytes (§5.5)")


def build_end_of_response(
    request_id: int, app_status: int, protocol_status: int, *, stderr_used: bool
) -> bytes:
    """The records that end a response (§6.1, §5.5) in one struct pack: the empty STDOUT
    record, the empty STDERR record if STDERR was used, then END_REQUEST.

    Byte for byte what build_record gives for each.
    """
    if not (app_status or protocol_status or stderr_used) and request_id < _KNOWN_ENDS:
        return _COMPLETE_ENDS[request_id]
    check_app_status(app_status)
    # One header per line: version, type, requestId, contentLength, paddingLength (§3.3).
    if stderr_used:
        return _pack_end_of_response_with_stderr(
            FCGI_VERSION_1, FCGI_STDOUT, request_id, 0, 0,
            FCGI_VERSION_1, FCGI_STDERR, request_id, 0, 0,
            FCGI_VERSION_1, FCGI_END_REQUEST, request_id, END_REQUEST_BODY.size, 0,
            app_status, protocol_status,
        )  # fmt: skip
    return _pack_end(request_id, app_status, protocol_status)


def _pack_end(request_id: int, app_status: int, protocol_status: int) -> bytes:
    return _pack_end_of_response(
        FCGI_VERSION_1, FCGI_STDOUT, request_id, 0, 0,
        FCGI_VERSION_1, FCGI_END_REQUEST, request_id, END_REQUEST_BODY.size, 0,
        app_status, protocol_status,
    )  # fmt: skip


#: The end of a response that went well (appStatus 0, FCGI_REQUEST_COMPLETE, no STDERR) for
#: the low request ids web servers use (nginx and Apache: always 1), packed once: 24 bytes
#: each, where packing them per response costs a dozen boxed ints.
_KNOWN_ENDS: Final = 64
_COMPLETE_ENDS: Final = tuple(_pack_end(request_id, 0, 0) for request_id in range(_KNOWN_ENDS))
