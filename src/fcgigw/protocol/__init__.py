"""Sans-I/O FastCGI 1.0: records and name-value pairs in, events out; no sockets, no threads.

The application side is ServerConnection, the web-server side ClientConnection; both share the
same events, so each end of the wire is exercised by the same code.
"""

from .client_connection import ClientConnection
from .connection import ServerConnection
from .constants import ProtocolStatus, RecordType, Role
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
    NEED_DATA,
    AbortRequest,
    ConnectionClosed,
    EndRequest,
    GetValues,
    GetValuesResult,
    InputData,
    InputEnd,
    InputEndedShort,
    OutputData,
    OutputEnd,
    RequestStarted,
    UnknownType,
)
from .pairs import decode_pairs, encode_pairs
from .records import build_record
from .settings import ProtocolSettings

__all__ = [
    "NEED_DATA",
    "AbortRequest",
    "ClientConnection",
    "ConnectionClosed",
    "EndRequest",
    "GetValues",
    "GetValuesResult",
    "InputData",
    "InputEnd",
    "InputEndedShort",
    "LocalProtocolError",
    "OutputData",
    "OutputEnd",
    "ProtocolError",
    "ProtocolSettings",
    "ProtocolStatus",
    "RecordType",
    "RemoteProtocolError",
    "RequestStarted",
    "Role",
    "ServerConnection",
    "UnknownType",
    "build_record",
    "decode_pairs",
    "encode_pairs",
]
