"""FastCGI 1.0 wire constants (spec §8), named once for the whole package."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

#: §8: value of the version component of every record header.
FCGI_VERSION_1: Final = 1
#: §8: bytes in a record header; "future versions of the protocol will not reduce this number".
HEADER_LEN: Final = 8
#: §3.3: contentData is "between 0 and 65535 bytes".
MAX_CONTENT_LENGTH: Final = 0xFFFF
#: Largest multiple of eight that fits in one record, so full records need no padding (§3.3
#: recommends records on eight-byte boundaries).
MAX_ALIGNED_CONTENT_LENGTH: Final = MAX_CONTENT_LENGTH & ~7
#: §3.3: management records use the null request id.
NULL_REQUEST_ID: Final = 0
#: §5.1: flags bit asking the application to keep the connection open after the request.
FCGI_KEEP_CONN: Final = 1
#: §3.4: lengths above this are sent in the four-byte form.
MAX_SHORT_PAIR_LENGTH: Final = 0x7F
#: §3.4: the four-byte form has 31 bits of length.
MAX_PAIR_LENGTH: Final = 0x7FFFFFFF


#: §8's record type numbers under the spec's own names, as plain ints: the hot paths compare
#: and index with these, where a RecordType member costs an enum attribute lookup and
#: ``RecordType(n)`` a metaclass call. RecordType is what the public events carry.
FCGI_BEGIN_REQUEST: Final = 1
FCGI_ABORT_REQUEST: Final = 2
FCGI_END_REQUEST: Final = 3
FCGI_PARAMS: Final = 4
FCGI_STDIN: Final = 5
FCGI_STDOUT: Final = 6
FCGI_STDERR: Final = 7
FCGI_DATA: Final = 8
FCGI_GET_VALUES: Final = 9
FCGI_GET_VALUES_RESULT: Final = 10
FCGI_UNKNOWN_TYPE: Final = 11


class RecordType(IntEnum):
    """§8: the type component of a record header."""

    BEGIN_REQUEST = FCGI_BEGIN_REQUEST
    ABORT_REQUEST = FCGI_ABORT_REQUEST
    END_REQUEST = FCGI_END_REQUEST
    PARAMS = FCGI_PARAMS
    STDIN = FCGI_STDIN
    STDOUT = FCGI_STDOUT
    STDERR = FCGI_STDERR
    DATA = FCGI_DATA
    GET_VALUES = FCGI_GET_VALUES
    GET_VALUES_RESULT = FCGI_GET_VALUES_RESULT
    UNKNOWN_TYPE = FCGI_UNKNOWN_TYPE


class Role(IntEnum):
    """§5.1 and §6: the role the web server asks the application to play."""

    RESPONDER = 1
    AUTHORIZER = 2
    FILTER = 3


class ProtocolStatus(IntEnum):
    """§5.5: protocolStatus of an END_REQUEST record."""

    REQUEST_COMPLETE = 0
    CANT_MPX_CONN = 1
    OVERLOADED = 2
    UNKNOWN_ROLE = 3


#: §4.1: the variable names defined for GET_VALUES / GET_VALUES_RESULT.
FCGI_MAX_CONNS: Final = b"FCGI_MAX_CONNS"
FCGI_MAX_REQS: Final = b"FCGI_MAX_REQS"
FCGI_MPXS_CONNS: Final = b"FCGI_MPXS_CONNS"

#: Appendix A: record types only a web server sends (what an application may receive).
WEB_SERVER_TYPES: Final = frozenset(
    {
        RecordType.BEGIN_REQUEST,
        RecordType.ABORT_REQUEST,
        RecordType.PARAMS,
        RecordType.STDIN,
        RecordType.DATA,
        RecordType.GET_VALUES,
    }
)
#: Appendix A: record types only an application sends (what a web server may receive).
APPLICATION_TYPES: Final = frozenset(
    {
        RecordType.END_REQUEST,
        RecordType.STDOUT,
        RecordType.STDERR,
        RecordType.GET_VALUES_RESULT,
        RecordType.UNKNOWN_TYPE,
    }
)
#: Appendix A: management record types, which carry the null request id.
MANAGEMENT_TYPES: Final = frozenset(
    {RecordType.GET_VALUES, RecordType.GET_VALUES_RESULT, RecordType.UNKNOWN_TYPE}
)

#: §8: every record type this version defines.
KNOWN_TYPES: Final = frozenset(int(t) for t in RecordType)
#: Record type number to its RecordType member, for building events without ``RecordType(n)``.
RECORD_TYPES: Final[dict[int, RecordType]] = {int(t): t for t in RecordType}
#: Role number to its Role member, likewise; a number not in it is not a §6 role.
ROLES: Final[dict[int, Role]] = {int(r): r for r in Role}
