"""Events: what a FastCGI record sequence means, in both directions (h11's approach).

The same classes serve the application side (ServerConnection) and the web-server side
(ClientConnection): a client sends ``RequestStarted`` and the server receives it.
"""

from __future__ import annotations

from typing import ClassVar, Final

from .constants import ProtocolStatus, RecordType, Role

_STDIN: Final = RecordType.STDIN
_STDOUT: Final = RecordType.STDOUT

Params = tuple[tuple[bytes, bytes], ...]


class Event:
    """What every event shares: equality, hash and repr by its fields, like a frozen
    dataclass's. The events are plain classes with their own ``__init__``, not dataclasses:
    three or more are made per request, and a frozen dataclass's generated ``__init__``
    costs ~15 times a plain one in the compiled build (benchmarks/PROFILE.md). Their
    attributes are ``Final``: the type checker keeps them read-only."""

    __slots__ = ()
    #: The constructor's arguments, in order.
    fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Event)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.fields)
        return f"{type(self).__name__}({shown})"


class RequestStarted(Event):
    """BEGIN_REQUEST plus the whole PARAMS stream (§5.1, §5.2): a request the app can start."""

    __slots__ = ("keep_connection", "params", "request_id", "role")
    fields = ("request_id", "role", "keep_connection", "params")

    def __init__(self, request_id: int, role: Role, keep_connection: bool, params: Params) -> None:
        self.request_id: Final = request_id
        self.role: Final = role
        self.keep_connection: Final = keep_connection
        self.params: Final = params


class InputData(Event):
    """Bytes of an input stream: STDIN, or DATA for a Filter (§5.3)."""

    __slots__ = ("data", "request_id", "stream")
    fields = ("request_id", "data", "stream")

    def __init__(self, request_id: int, data: bytes, stream: RecordType = _STDIN) -> None:
        self.request_id: Final = request_id
        self.data: Final = data
        self.stream: Final = stream


class InputEnd(Event):
    """The end of an input stream: its empty record (§3.3); and, before it, for a
    Responder's body, the last of its CONTENT_LENGTH bytes (``at_length``): the body is
    whole, the stream's empty record still to come."""

    __slots__ = ("at_length", "request_id", "stream")
    fields = ("request_id", "stream", "at_length")

    def __init__(
        self, request_id: int, stream: RecordType = _STDIN, at_length: bool = False
    ) -> None:
        self.request_id: Final = request_id
        self.stream: Final = stream
        self.at_length: Final = at_length


class InputEndedShort(Event):
    """An empty STDIN record ``missing`` bytes before the last of a Responder's
    CONTENT_LENGTH bytes (§6.2). It ends a body whose client failed to send it all (as
    libfcgi's cgi-fcgi sends it, then waits for the answer), or it is one of mod_fcgid's
    stray empty records, with the rest of the body to come: more STDIN may follow, and the
    server decides how long to wait for it."""

    __slots__ = ("missing", "request_id")
    fields = ("request_id", "missing")

    def __init__(self, request_id: int, missing: int) -> None:
        self.request_id: Final = request_id
        self.missing: Final = missing


class AbortRequest(Event):
    """ABORT_REQUEST (§5.4): the app should end the request as soon as it can."""

    __slots__ = ("request_id",)
    fields = ("request_id",)

    def __init__(self, request_id: int) -> None:
        self.request_id: Final = request_id


class OutputData(Event):
    """Bytes of an output stream: STDOUT or STDERR (§5.3)."""

    __slots__ = ("data", "request_id", "stream")
    fields = ("request_id", "data", "stream")

    def __init__(self, request_id: int, data: bytes, stream: RecordType = _STDOUT) -> None:
        self.request_id: Final = request_id
        self.data: Final = data
        self.stream: Final = stream


class OutputEnd(Event):
    """The empty record that ends STDOUT or STDERR (received by a client)."""

    __slots__ = ("request_id", "stream")
    fields = ("request_id", "stream")

    def __init__(self, request_id: int, stream: RecordType = _STDOUT) -> None:
        self.request_id: Final = request_id
        self.stream: Final = stream


class EndRequest(Event):
    """END_REQUEST (§5.5). Sending it also ends the request's output streams."""

    __slots__ = ("app_status", "protocol_status", "request_id")
    fields = ("request_id", "app_status", "protocol_status")

    def __init__(
        self,
        request_id: int,
        app_status: int = 0,
        protocol_status: ProtocolStatus = ProtocolStatus.REQUEST_COMPLETE,
    ) -> None:
        self.request_id: Final = request_id
        self.app_status: Final = app_status
        self.protocol_status: Final = protocol_status


class GetValues(Event):
    """GET_VALUES (§4.1): the names the web server asks about."""

    __slots__ = ("names",)
    fields = ("names",)

    def __init__(self, names: tuple[bytes, ...]) -> None:
        self.names: Final = names


class GetValuesResult(Event):
    """GET_VALUES_RESULT (§4.1): the values the application reports."""

    __slots__ = ("values",)
    fields = ("values",)

    def __init__(self, values: tuple[tuple[bytes, bytes], ...]) -> None:
        self.values: Final = values


class UnknownType(Event):
    """UNKNOWN_TYPE (§4.2): the application did not understand a management record type."""

    __slots__ = ("record_type",)
    fields = ("record_type",)

    def __init__(self, record_type: int) -> None:
        self.record_type: Final = record_type


class ConnectionClosed(Event):
    """The peer closed its side of the transport connection (§3.5)."""

    __slots__ = ()


class NeedData:
    """Sentinel type: no complete event is buffered yet; feed more bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

#: What a ServerConnection can return from next_event().
ServerEvent = (
    RequestStarted | InputData | InputEnd | InputEndedShort | AbortRequest | ConnectionClosed
)
#: What a ClientConnection can return from next_event().
ClientEvent = OutputData | OutputEnd | EndRequest | GetValuesResult | UnknownType | ConnectionClosed
