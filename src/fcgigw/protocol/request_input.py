"""Records in, request events out: what the application side of a connection does with each
record it receives (FastCGI 1.0 §4, §5), sans I/O.

It routes records by type, answers management records (§4) and refused requests itself,
and walks each request's input through the state table (state.py). ServerConnection adds
the public state and the response's records on top.

Every request passes through here, so the per-record path compares plain ints (constants'
FCGI_* numbers), routes by a table keyed by record type, and builds enum members by lookup.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

from .constants import (
    APPLICATION_TYPES,
    FCGI_ABORT_REQUEST,
    FCGI_BEGIN_REQUEST,
    FCGI_DATA,
    FCGI_GET_VALUES,
    FCGI_KEEP_CONN,
    FCGI_MAX_CONNS,
    FCGI_MAX_REQS,
    FCGI_MPXS_CONNS,
    FCGI_PARAMS,
    FCGI_STDIN,
    NULL_REQUEST_ID,
    RECORD_TYPES,
    ROLES,
    ProtocolStatus,
    RecordType,
    Role,
)
from .errors import RemoteProtocolError
from .events import (
    AbortRequest,
    InputData,
    InputEnd,
    InputEndedShort,
    RequestStarted,
    ServerEvent,
)
from .framing import RecordConnection
from .pairs import Pair, decode_pairs, encode_pairs
from .records import (
    BEGIN_REQUEST_BODY,
    END_REQUEST_BODY,
    build_record,
    check_app_status,
)
from .settings import ProtocolSettings
from .state import ACCEPTS, NEXT_STATE, Action, InputState

# Enum members as module globals: on the per-record path ``InputState.PARAMS`` costs a lookup
# through the enum's metaclass (some thousand instructions), a global next to nothing.
_PARAMS: Final = Action.PARAMS
_INPUT: Final = Action.INPUT
_ABORT: Final = Action.ABORT
_AWAITING_PARAMS: Final = InputState.PARAMS
_INPUT_DONE: Final = InputState.INPUT_DONE
_BODY_COMPLETE: Final = InputState.BODY_COMPLETE
_RESPONDER: Final = Role.RESPONDER
_ABORTED: Final = InputState.ABORTED
_STDIN: Final = RecordType.STDIN
_CONTENT_LENGTH: Final = b"CONTENT_LENGTH"
#: Longer digit strings are not taken as a length (int() of them would cost for nothing).
_MAX_LENGTH_DIGITS: Final = 18
#: ProtocolSettings is frozen, so connections without their own settings can share one (its
#: construction costs microseconds a connection would otherwise pay).
_DEFAULT_SETTINGS: Final = ProtocolSettings()


def end_request_record(request_id: int, app_status: int, status: ProtocolStatus) -> bytes:
    """An END_REQUEST record (§5.5)."""
    check_app_status(app_status)
    return build_record(
        RecordType.END_REQUEST, request_id, END_REQUEST_BODY.pack(app_status, status)
    )


def unknown_type_record(record_type: int) -> bytes:
    """§4.2: the UNKNOWN_TYPE answer to a management record of ``record_type``."""
    return build_record(RecordType.UNKNOWN_TYPE, 0, bytes((record_type, 0, 0, 0, 0, 0, 0, 0)))


def get_values_result(content: bytes, settings: ProtocolSettings) -> bytes:
    """§4.1: the GET_VALUES_RESULT record for a GET_VALUES record's ``content``."""
    known = {
        FCGI_MAX_CONNS: str(settings.max_connections).encode(),
        FCGI_MAX_REQS: str(settings.max_requests).encode(),
        FCGI_MPXS_CONNS: b"1" if settings.multiplex_connections else b"0",
    }
    asked = decode_pairs(content, max_pairs=settings.max_params_count)
    # §4.1: names the application does not understand are omitted from the reply.
    values = [(name, known[name]) for name, _ in asked if name in known]
    return build_record(RecordType.GET_VALUES_RESULT, 0, encode_pairs(values))


def declared_body_length(pairs: list[Pair]) -> int:
    """CONTENT_LENGTH in bytes; 0 when absent, empty (nginx's GET) or not digits (Caddy's
    "-1")."""
    for name, value in pairs:
        if name == _CONTENT_LENGTH:
            if 0 < len(value) <= _MAX_LENGTH_DIGITS and value.isdigit():
                return int(value)
            return 0
    return 0


def _null_request_id(record_type: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"{RECORD_TYPES[record_type].name} record with the null request id (§3.3)"
    )


class ActiveRequest:
    """What the connection remembers about one active request id (§3.3)."""

    __slots__ = (
        "accepts",
        "keep_connection",
        "params",
        "role",
        "started",
        "state",
        "stderr_used",
        "stdin_due",
    )

    def __init__(self, role: Role, keep_connection: bool) -> None:
        self.role = role
        self.keep_connection = keep_connection
        #: The PARAMS stream so far: the first record's bytes as they came, a bytearray once
        #: a second record has to be appended (§5.2 allows any split).
        self.params: bytes | bytearray = b""
        self.started = False
        self.stderr_used = False
        #: A Responder's STDIN bytes that CONTENT_LENGTH still promises (_take_input); 0 when
        #: none or unknown.
        self.stdin_due = 0
        self.state = _AWAITING_PARAMS
        self.accepts = ACCEPTS[role, _AWAITING_PARAMS]

    def enter(self, state: InputState) -> None:
        """Move to ``state``, and to its row of the transition table."""
        self.state = state
        self.accepts = ACCEPTS[self.role, state]


class RequestInput(RecordConnection[ServerEvent]):
    """The receiving half of ServerConnection: records to events, and the answers the
    protocol gives by itself (§4.1: they "not involve the application proper")."""

    def __init__(self, settings: ProtocolSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or _DEFAULT_SETTINGS
        self._requests: dict[int, ActiveRequest] = {}
        self._outbox: list[bytes] = []
        self._close_when_idle = False

    def data_to_send(self) -> bytes:
        """Bytes the protocol produced by itself; send them before anything else."""
        if not self._outbox:
            return b""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def _handle_record(self, record_type: int, request_id: int, content: bytes) -> None:
        # The hot path first: input that an active request's row of the state table accepts.
        # Anything else -- BEGIN_REQUEST, management records, records for inactive ids, and
        # records out of sequence -- is routed by its type.
        request = self._requests.get(request_id)
        if request is None:
            if record_type == FCGI_BEGIN_REQUEST:  # one per request: a direct call
                self._begin_request(record_type, request_id, content)
            else:
                _ROUTES[record_type](self, record_type, request_id, content)
            return
        action = request.accepts.get(record_type)
        if action is _INPUT:
            _take_input(self._events, request_id, request, record_type, content)
        elif action is _PARAMS:
            self._params(request_id, request, content)
        elif action is _ABORT:
            self._abort(request_id, request)
        elif action is None:
            _ROUTES[record_type](self, record_type, request_id, content)
        # Action.DISCARD: input after an abort (§5.4), an Authorizer's empty STDIN (§6.3).

    # -- management records (§4), and records no application takes -------------------------

    def _unknown_type(self, record_type: int, request_id: int, content: bytes) -> None:
        # §4.2: answer an unknown management type; the connection stays usable. An unknown
        # type on a request id is ignored, like any record the application cannot place.
        if request_id == NULL_REQUEST_ID:
            self._outbox.append(unknown_type_record(record_type))

    def _misdirected(self, record_type: int, request_id: int, content: bytes) -> None:
        raise RemoteProtocolError(
            f"{RECORD_TYPES[record_type].name} record sent to the application (Appendix A)"
        )

    def _get_values(self, record_type: int, request_id: int, content: bytes) -> None:
        if request_id != NULL_REQUEST_ID:
            raise RemoteProtocolError("GET_VALUES with a non-null request id (§3.3)")
        self._outbox.append(get_values_result(content, self.settings))

    # -- application records (§5) ----------------------------------------------------------

    def _begin_request(self, record_type: int, request_id: int, content: bytes) -> None:
        if request_id == NULL_REQUEST_ID:
            raise _null_request_id(record_type)
        if len(content) != BEGIN_REQUEST_BODY.size:
            raise RemoteProtocolError(f"BEGIN_REQUEST body of {len(content)} bytes, not 8 (§5.1)")
        if request_id in self._requests:
            raise RemoteProtocolError(f"BEGIN_REQUEST for request {request_id}, already active")
        # §5.1's body by index (a native operation each when compiled; struct boxes a tuple).
        role_number = content[0] << 8 | content[1]
        flags = content[2]
        keep_connection = (flags & FCGI_KEEP_CONN) != 0
        role = ROLES.get(role_number)
        refusal = self._refusal(role)
        if refusal is not None:
            self._outbox.append(end_request_record(request_id, 0, refusal))
            self._close_when_idle |= not keep_connection
            return
        assert role is not None  # _refusal answers UNKNOWN_ROLE for anything else
        self._requests[request_id] = ActiveRequest(role, keep_connection)

    def _refusal(self, role: Role | None) -> ProtocolStatus | None:
        if role is None or role not in self.settings.roles:
            return ProtocolStatus.UNKNOWN_ROLE
        if self._requests and not self.settings.multiplex_connections:
            return ProtocolStatus.CANT_MPX_CONN
        if len(self._requests) >= self.settings.max_concurrent_requests_per_connection:
            return ProtocolStatus.OVERLOADED
        return None

    def _unexpected(self, record_type: int, request_id: int, content: bytes) -> None:
        """A request input record that _handle_record's table lookup did not take."""
        request = self._requests.get(request_id)
        if request is None:
            if request_id == NULL_REQUEST_ID:  # never active: BEGIN_REQUEST refuses it
                raise _null_request_id(record_type)
            # §3.3: "While a request ID R is inactive, the application ignores records with
            # requestId == R" (nginx sends the rest of STDIN after an early END_REQUEST).
            return
        raise RemoteProtocolError(
            f"{RECORD_TYPES[record_type].name} record for request {request_id} while it "
            f"expects {request.state.value} ({request.role.name})"
        )

    def _params(self, request_id: int, request: ActiveRequest, content: bytes) -> None:
        if content:
            # §5.2: PARAMS may be split anywhere, even mid-pair (h2o splits at 65535 bytes), so
            # pairs are decoded only once the stream is whole.
            params = request.params
            if len(params) + len(content) > self.settings.max_params_bytes:
                raise RemoteProtocolError(
                    f"PARAMS of request {request_id} exceed {self.settings.max_params_bytes} bytes",
                    limit="max_params_bytes",
                )
            if not params:
                request.params = content  # nginx's one PARAMS record: kept as it came
                return
            if isinstance(params, bytes):
                params = request.params = bytearray(params)
            params += content
            return
        params = request.params
        if isinstance(params, bytearray):
            params = bytes(params)  # pairs are bytes (bytes(bytes) would cost a call for nothing)
        pairs = decode_pairs(params, max_pairs=self.settings.max_params_count)
        request.params = b""
        if request.role is _RESPONDER:  # a Filter's and an Authorizer's input are read as sent
            request.stdin_due = declared_body_length(pairs)
        request.started = True
        request.enter(NEXT_STATE[request.role, FCGI_PARAMS])
        self._events.append(
            RequestStarted(request_id, request.role, request.keep_connection, tuple(pairs))
        )
        if request.state is _INPUT_DONE:
            # §6.3: an Authorizer has no body; say so at once rather than wait for a STDIN record
            # that Apache never sends.
            self._events.append(InputEnd(request_id, _STDIN))

    def _abort(self, request_id: int, request: ActiveRequest) -> None:
        if not request.started:
            # The application never saw this request: answer for it (§5.4 asks for END_REQUEST).
            del self._requests[request_id]
            self._outbox.append(end_request_record(request_id, 0, ProtocolStatus.REQUEST_COMPLETE))
            self._close_when_idle |= not request.keep_connection
            return
        request.enter(_ABORTED)
        self._events.append(AbortRequest(request_id))


def _take_input(
    events: deque[ServerEvent],
    request_id: int,
    request: ActiveRequest,
    record_type: int,
    content: bytes,
) -> None:
    """An input record the request's state accepts, as events.

    A Responder's body is read against its CONTENT_LENGTH (§6.2), as CGI programs and
    libfcgi's apps read it, besides the empty record that ends the stream (§3.3): HAProxy
    2.6 now and then leaves that record out of an HTTP/2 request's body (the app would wait
    for it forever), and mod_fcgid sends one for every empty piece of a body it reads (an
    HTTP/2 client's body has one wherever the client paused), then the rest. So the body
    ends with its last promised byte (InputEnd ``at_length``), and an empty record before
    that is not surely its end (InputEndedShort: more may come); the empty record after it
    is the stream's end (InputEnd), which the server core waits for before END_REQUEST, as
    the web server may still be writing it. A server whose client went away mid-body
    (§6.2) closes the connection or aborts the request (Apache, Caddy, HAProxy), which ends
    it, or ends the stream early and waits (cgi-fcgi): InputEndedShort."""
    stream = RECORD_TYPES[record_type]
    if request.state is _BODY_COMPLETE:
        if content:
            raise RemoteProtocolError(
                f"STDIN for request {request_id} beyond its CONTENT_LENGTH (§6.2)"
            )
        request.enter(_INPUT_DONE)  # the empty record of a body that ended at its length
        events.append(InputEnd(request_id, stream))
        return
    if content:
        events.append(InputData(request_id, content, stream))
        due = request.stdin_due
        if due:
            due -= len(content)
            request.stdin_due = due
            if due == 0:
                request.enter(_BODY_COMPLETE)
                events.append(InputEnd(request_id, stream, True))
        return
    due = request.stdin_due
    if due > 0:  # only a Responder's, whose one input stream is STDIN
        events.append(InputEndedShort(request_id, due))
        return
    request.enter(NEXT_STATE[request.role, record_type])
    events.append(InputEnd(request_id, stream))


_Handler = Callable[[RequestInput, int, int, bytes], None]


def _build_routes() -> tuple[_Handler, ...]:
    """What the application does with each of the 256 record types a header can name
    (Appendix A), indexed by the header's plain int: routing a record hashes nothing."""
    routes: list[_Handler] = [RequestInput._unknown_type] * 256  # §4.2
    routes[FCGI_BEGIN_REQUEST] = RequestInput._begin_request
    for record_type in (FCGI_ABORT_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_DATA):
        routes[record_type] = RequestInput._unexpected
    routes[FCGI_GET_VALUES] = RequestInput._get_values
    for record_type in APPLICATION_TYPES:  # types only an application sends
        routes[record_type] = RequestInput._misdirected
    return tuple(routes)


_ROUTES: Final = _build_routes()
