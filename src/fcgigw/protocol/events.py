"""Events: what a FastCGI record sequence means, in both directions (h11's approach).

The same classes serve the application side (ServerConnection) and the web-server side
(ClientConnection): a client sends ``RequestStarted`` and the server receives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import ProtocolStatus, RecordType, Role

Params = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """BEGIN_REQUEST plus the whole PARAMS stream (§5.1, §5.2): a request the app can start."""

    request_id: int
    role: Role
    keep_connection: bool
    params: Params


@dataclass(frozen=True, slots=True)
class InputData:
    """Bytes of an input stream: STDIN, or DATA for a Filter (§5.3)."""

    request_id: int
    data: bytes
    stream: RecordType = RecordType.STDIN


@dataclass(frozen=True, slots=True)
class InputEnd:
    """The empty record that ends an input stream (§3.3): the end of the body, whatever
    CONTENT_LENGTH said."""

    request_id: int
    stream: RecordType = RecordType.STDIN


@dataclass(frozen=True, slots=True)
class AbortRequest:
    """ABORT_REQUEST (§5.4): the app should end the request as soon as it can."""

    request_id: int


@dataclass(frozen=True, slots=True)
class OutputData:
    """Bytes of an output stream: STDOUT or STDERR (§5.3)."""

    request_id: int
    data: bytes
    stream: RecordType = RecordType.STDOUT


@dataclass(frozen=True, slots=True)
class OutputEnd:
    """The empty record that ends STDOUT or STDERR (received by a client)."""

    request_id: int
    stream: RecordType = RecordType.STDOUT


@dataclass(frozen=True, slots=True)
class EndRequest:
    """END_REQUEST (§5.5). Sending it also ends the request's output streams."""

    request_id: int
    app_status: int = 0
    protocol_status: ProtocolStatus = ProtocolStatus.REQUEST_COMPLETE


@dataclass(frozen=True, slots=True)
class GetValues:
    """GET_VALUES (§4.1): the names the web server asks about."""

    names: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class GetValuesResult:
    """GET_VALUES_RESULT (§4.1): the values the application reports."""

    values: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class UnknownType:
    """UNKNOWN_TYPE (§4.2): the application did not understand a management record type."""

    record_type: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side of the transport connection (§3.5)."""


class NeedData:
    """Sentinel type: no complete event is buffered yet; feed more bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()

#: What a ServerConnection can return from next_event().
ServerEvent = RequestStarted | InputData | InputEnd | AbortRequest | ConnectionClosed
#: What a ClientConnection can return from next_event().
ClientEvent = OutputData | OutputEnd | EndRequest | GetValuesResult | UnknownType | ConnectionClosed
