"""The web-server side of one FastCGI connection, sans I/O: what our client and tests speak."""

from __future__ import annotations

from typing import Final

from .constants import (
    FCGI_END_REQUEST,
    FCGI_GET_VALUES_RESULT,
    FCGI_KEEP_CONN,
    FCGI_UNKNOWN_TYPE,
    KNOWN_TYPES,
    NULL_REQUEST_ID,
    RECORD_TYPES,
    WEB_SERVER_TYPES,
    ProtocolStatus,
    RecordType,
)
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    AbortRequest,
    ClientEvent,
    EndRequest,
    GetValues,
    GetValuesResult,
    InputData,
    InputEnd,
    OutputData,
    OutputEnd,
    RequestStarted,
    UnknownType,
)
from .framing import RecordConnection
from .pairs import decode_pairs, encode_pairs
from .records import BEGIN_REQUEST_BODY, END_REQUEST_BODY, build_record, build_stream_records

_INPUT_STREAMS: Final = (RecordType.STDIN, RecordType.DATA)
#: GET_VALUES_RESULT carries a handful of pairs; bound it like any peer input.
_MAX_RESULT_PAIRS: Final = 1000

ClientSendable = RequestStarted | InputData | InputEnd | AbortRequest | GetValues


class ClientConnection(RecordConnection[ClientEvent]):
    """One transport connection as the web server (or our client) sees it."""

    def __init__(self) -> None:
        super().__init__()
        self._active: set[int] = set()

    @property
    def active_requests(self) -> frozenset[int]:
        """Request ids begun and not yet answered with END_REQUEST."""
        return frozenset(self._active)

    def _handle_record(self, record_type: int, request_id: int, content: bytes) -> None:
        if record_type not in KNOWN_TYPES or record_type in WEB_SERVER_TYPES:
            raise RemoteProtocolError(f"record type {record_type} sent to the web server")
        if record_type == FCGI_GET_VALUES_RESULT:
            pairs = decode_pairs(content, max_pairs=_MAX_RESULT_PAIRS)
            self._events.append(GetValuesResult(tuple(pairs)))
        elif record_type == FCGI_UNKNOWN_TYPE:
            if not content:
                raise RemoteProtocolError("UNKNOWN_TYPE record without a body (§4.2)")
            self._events.append(UnknownType(content[0]))
        elif request_id not in self._active:
            raise RemoteProtocolError(f"record for request {request_id}, which is not active")
        elif record_type == FCGI_END_REQUEST:
            if len(content) != END_REQUEST_BODY.size:
                raise RemoteProtocolError(f"END_REQUEST body of {len(content)} bytes (§5.5)")
            app_status, status = END_REQUEST_BODY.unpack(content)
            if status not in ProtocolStatus._value2member_map_:
                raise RemoteProtocolError(f"unknown protocolStatus {status} (§5.5)")
            self._active.discard(request_id)
            self._events.append(EndRequest(request_id, app_status, ProtocolStatus(status)))
        else:
            stream = RECORD_TYPES[record_type]
            if content:
                self._events.append(OutputData(request_id, content, stream))
            else:
                self._events.append(OutputEnd(request_id, stream))

    def send(self, event: ClientSendable) -> bytes:
        """Bytes for one request event."""
        if isinstance(event, GetValues):
            pairs = encode_pairs((name, b"") for name in event.names)
            return build_record(RecordType.GET_VALUES, NULL_REQUEST_ID, pairs)
        if isinstance(event, RequestStarted):
            return self._begin(event)
        if event.request_id not in self._active:
            raise LocalProtocolError(f"request {event.request_id} is not active")
        if isinstance(event, AbortRequest):
            return build_record(RecordType.ABORT_REQUEST, event.request_id)
        if event.stream not in _INPUT_STREAMS:
            raise LocalProtocolError(f"cannot send {event.stream.name} as input")
        if isinstance(event, InputEnd):
            return build_record(event.stream, event.request_id)
        return build_stream_records(event.stream, event.request_id, event.data)

    def _begin(self, event: RequestStarted) -> bytes:
        if event.request_id == NULL_REQUEST_ID or event.request_id > 0xFFFF:
            raise LocalProtocolError(f"request id {event.request_id} is not in 1..65535 (§3.3)")
        if event.request_id in self._active:
            raise LocalProtocolError(f"request {event.request_id} is already active")
        self._active.add(event.request_id)
        flags = FCGI_KEEP_CONN if event.keep_connection else 0
        body = BEGIN_REQUEST_BODY.pack(event.role, flags)
        params = encode_pairs(event.params)
        return b"".join(
            (
                build_record(RecordType.BEGIN_REQUEST, event.request_id, body),
                build_stream_records(RecordType.PARAMS, event.request_id, params),
                build_record(RecordType.PARAMS, event.request_id),
            )
        )
