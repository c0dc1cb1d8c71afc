"""The application side of one FastCGI connection, sans I/O: bytes in, events out.

``receive_data(bytes)`` then ``next_event()`` until NEED_DATA; ``send(event) -> bytes`` for the
response; ``data_to_send()`` for what the protocol answers by itself (GET_VALUES_RESULT,
UNKNOWN_TYPE, refused requests), which §4.1 says should "not involve the application proper".
"""

from __future__ import annotations

from .constants import (
    APPLICATION_TYPES,
    FCGI_KEEP_CONN,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    KNOWN_TYPES,
    NULL_REQUEST_ID,
    ProtocolStatus,
    RecordType,
    Role,
)
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    AbortRequest,
    EndRequest,
    InputData,
    InputEnd,
    OutputData,
    RequestStarted,
    ServerEvent,
)
from .framing import RecordConnection
from .pairs import decode_pairs, encode_pairs
from .records import BEGIN_REQUEST_BODY, END_REQUEST_BODY, build_record, build_stream_records
from .settings import ProtocolSettings
from .state import NEXT_STATE, TRANSITIONS, Action, InputState

_ROLES = frozenset(int(r) for r in Role)


def end_request_record(request_id: int, app_status: int, status: ProtocolStatus) -> bytes:
    """An END_REQUEST record (§5.5)."""
    if not 0 <= app_status <= 0xFFFFFFFF:
        raise LocalProtocolError(f"appStatus {app_status} does not fit in four bytes (§5.5)")
    return build_record(
        RecordType.END_REQUEST, request_id, END_REQUEST_BODY.pack(app_status, status)
    )


class _Request:
    """What the connection remembers about one active request id."""

    __slots__ = ("keep_connection", "params", "role", "started", "state", "stderr_used")

    def __init__(self, role: Role, keep_connection: bool) -> None:
        self.role = role
        self.keep_connection = keep_connection
        self.state = InputState.PARAMS
        self.params = bytearray()
        self.started = False
        self.stderr_used = False


class ServerConnection(RecordConnection[ServerEvent]):
    """One transport connection as the FastCGI application sees it."""

    def __init__(self, settings: ProtocolSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or ProtocolSettings()
        self._requests: dict[int, _Request] = {}
        self._outbox: list[bytes] = []
        self._close_when_idle = False

    # -- state the server layer acts on ---------------------------------------------------

    @property
    def active_requests(self) -> int:
        """Requests begun and not yet ended with END_REQUEST."""
        return len(self._requests)

    @property
    def should_close(self) -> bool:
        """§5.1: a request without FCGI_KEEP_CONN has ended and none is left running."""
        return self._close_when_idle and not self._requests

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet turned into events (for read flow control)."""
        return self._records.buffered_bytes

    def input_state(self, request_id: int) -> InputState | None:
        """Where request ``request_id`` is in its input, or None if it is not active."""
        request = self._requests.get(request_id)
        return request.state if request else None

    # -- receiving ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes the protocol produced by itself; send them before anything else."""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def _handle_record(self, record_type: int, request_id: int, content: bytes) -> None:
        if record_type not in KNOWN_TYPES:
            # §4.2: answer an unknown management type; the connection stays usable. An unknown
            # type on a request id is ignored, like any record the application cannot place.
            if request_id == NULL_REQUEST_ID:
                self._outbox.append(
                    build_record(
                        RecordType.UNKNOWN_TYPE, 0, bytes((record_type, 0, 0, 0, 0, 0, 0, 0))
                    )
                )
            return
        if record_type in APPLICATION_TYPES:
            raise RemoteProtocolError(
                f"{RecordType(record_type).name} record sent to the application (Appendix A)"
            )
        if record_type == RecordType.GET_VALUES:
            self._get_values(request_id, content)
        elif request_id == NULL_REQUEST_ID:
            raise RemoteProtocolError(
                f"{RecordType(record_type).name} record with the null request id (§3.3)"
            )
        elif record_type == RecordType.BEGIN_REQUEST:
            self._begin_request(request_id, content)
        else:
            request = self._requests.get(request_id)
            # §3.3: "While a request ID R is inactive, the application ignores records with
            # requestId == R" (nginx sends the rest of STDIN after an early END_REQUEST).
            if request is not None:
                self._request_record(request_id, request, record_type, content)

    # -- management records (§4) -----------------------------------------------------------

    def _get_values(self, request_id: int, content: bytes) -> None:
        if request_id != NULL_REQUEST_ID:
            raise RemoteProtocolError("GET_VALUES with a non-null request id (§3.3)")
        known = {
            FCGI_MAX_CONNS: str(self.settings.max_connections).encode(),
            FCGI_MAX_REQS: str(self.settings.max_requests).encode(),
            FCGI_MPXS_CONNS: b"1" if self.settings.multiplex_connections else b"0",
        }
        asked = decode_pairs(content, max_pairs=self.settings.max_params_count)
        # §4.1: names the application does not understand are omitted from the reply.
        values = [(name, known[name]) for name, _ in asked if name in known]
        self._outbox.append(build_record(RecordType.GET_VALUES_RESULT, 0, encode_pairs(values)))

    # -- application records (§5) ----------------------------------------------------------

    def _begin_request(self, request_id: int, content: bytes) -> None:
        if len(content) != BEGIN_REQUEST_BODY.size:
            raise RemoteProtocolError(f"BEGIN_REQUEST body of {len(content)} bytes, not 8 (§5.1)")
        if request_id in self._requests:
            raise RemoteProtocolError(f"BEGIN_REQUEST for request {request_id}, already active")
        role_number, flags = BEGIN_REQUEST_BODY.unpack(content)
        keep_connection = bool(flags & FCGI_KEEP_CONN)
        refusal = self._refusal(role_number)
        if refusal is not None:
            self._outbox.append(end_request_record(request_id, 0, refusal))
            self._close_when_idle |= not keep_connection
            return
        self._requests[request_id] = _Request(Role(role_number), keep_connection)

    def _refusal(self, role_number: int) -> ProtocolStatus | None:
        if role_number not in _ROLES or Role(role_number) not in self.settings.roles:
            return ProtocolStatus.UNKNOWN_ROLE
        if self._requests and not self.settings.multiplex_connections:
            return ProtocolStatus.CANT_MPX_CONN
        if len(self._requests) >= self.settings.max_concurrent_requests_per_connection:
            return ProtocolStatus.OVERLOADED
        return None

    def _request_record(
        self, request_id: int, request: _Request, record_type: int, content: bytes
    ) -> None:
        action = TRANSITIONS.get((request.role, request.state, record_type))
        if action is None:
            raise RemoteProtocolError(
                f"{RecordType(record_type).name} record for request {request_id} while it "
                f"expects {request.state.value} ({request.role.name})"
            )
        if action is Action.PARAMS:
            self._params(request_id, request, content)
        elif action is Action.INPUT:
            self._input(request_id, request, record_type, content)
        elif action is Action.ABORT:
            self._abort(request_id, request)

    def _params(self, request_id: int, request: _Request, content: bytes) -> None:
        if content:
            # §5.2: PARAMS may be split anywhere, even mid-pair (h2o splits at 65535 bytes), so
            # pairs are decoded only once the stream is whole.
            if len(request.params) + len(content) > self.settings.max_params_bytes:
                raise RemoteProtocolError(
                    f"PARAMS of request {request_id} exceed {self.settings.max_params_bytes} bytes",
                    limit="max_params_bytes",
                )
            request.params += content
            return
        pairs = decode_pairs(bytes(request.params), max_pairs=self.settings.max_params_count)
        request.params = bytearray()
        request.started = True
        request.state = NEXT_STATE[request.role, RecordType.PARAMS]
        self._events.append(
            RequestStarted(request_id, request.role, request.keep_connection, tuple(pairs))
        )
        if request.state is InputState.INPUT_DONE:
            # §6.3: an Authorizer has no body; say so at once rather than wait for a STDIN record
            # that Apache never sends.
            self._events.append(InputEnd(request_id, RecordType.STDIN))

    def _input(self, request_id: int, request: _Request, record_type: int, content: bytes) -> None:
        stream = RecordType(record_type)
        if content:
            self._events.append(InputData(request_id, content, stream))
            return
        request.state = NEXT_STATE[request.role, record_type]
        self._events.append(InputEnd(request_id, stream))

    def _abort(self, request_id: int, request: _Request) -> None:
        if not request.started:
            # The application never saw this request: answer for it (§5.4 asks for END_REQUEST).
            del self._requests[request_id]
            self._outbox.append(end_request_record(request_id, 0, ProtocolStatus.REQUEST_COMPLETE))
            self._close_when_idle |= not request.keep_connection
            return
        request.state = InputState.ABORTED
        self._events.append(AbortRequest(request_id))

    # -- sending ----------------------------------------------------------------------------

    def send(self, event: OutputData | EndRequest) -> bytes:
        """Bytes for one response event: STDOUT/STDERR data, or the end of the request."""
        request = self._requests.get(event.request_id)
        if request is None or not request.started:
            raise LocalProtocolError(f"request {event.request_id} is not active")
        if isinstance(event, OutputData):
            if event.stream not in (RecordType.STDOUT, RecordType.STDERR):
                raise LocalProtocolError(f"cannot send {event.stream.name} as output")
            if event.stream is RecordType.STDERR and event.data:
                request.stderr_used = True
            return build_stream_records(event.stream, event.request_id, event.data)
        return self._end_request(event, request)

    def _end_request(self, event: EndRequest, request: _Request) -> bytes:
        # §6.1: STDOUT gets at least its empty record; STDERR one only if it was used.
        parts = [build_record(RecordType.STDOUT, event.request_id)]
        if request.stderr_used:
            parts.append(build_record(RecordType.STDERR, event.request_id))
        parts.append(end_request_record(event.request_id, event.app_status, event.protocol_status))
        # §3.3: the id becomes inactive when END_REQUEST is sent; §5.1: without KEEP_CONN the
        # application closes the connection after this response.
        del self._requests[event.request_id]
        self._close_when_idle |= not request.keep_connection
        return b"".join(parts)
