"""The protocol core's fast paths give what the plain reading of the spec gives.

decode_pairs against a reference decoder (the spec read literally, one length at a time);
the buffer's no-copy and gathered forms against each other; the one-pack response ends and
one-record STDOUT against build_record; the int tables against the enums they mirror; and the
order in which errors are reported now that records go by their request's row of the table.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcgigw.protocol import (
    NEED_DATA,
    ConnectionClosed,
    EndRequest,
    InputEnd,
    OutputData,
    ProtocolSettings,
    ProtocolStatus,
    RecordType,
    RemoteProtocolError,
    RequestStarted,
    Role,
    ServerConnection,
    build_record,
    constants,
    decode_pairs,
    encode_pairs,
    framing,
)
from fcgigw.protocol.framing import _COMPACT_AFTER_BYTES, RecordBuffer
from fcgigw.protocol.records import (
    build_end_of_response,
    build_stream_records,
    parse_header,
)
from fcgigw.protocol.state import ACCEPTS, TRANSITIONS, InputState

#: nginx's stock fastcgi_params for a GET, as benchmarks/protocol_micro.py times it.
NGINX_PARAMS = (
    (b"QUERY_STRING", b"id=7"),
    (b"REQUEST_METHOD", b"GET"),
    (b"CONTENT_TYPE", b""),
    (b"CONTENT_LENGTH", b""),
    (b"SCRIPT_NAME", b"/index.php"),
    (b"REQUEST_URI", b"/index.php?id=7"),
    (b"DOCUMENT_URI", b"/index.php"),
    (b"DOCUMENT_ROOT", b"/var/www/html"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REQUEST_SCHEME", b"http"),
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"51234"),
    (b"SERVER_ADDR", b"127.0.0.1"),
    (b"SERVER_PORT", b"80"),
    (b"SERVER_NAME", b"localhost"),
    (b"HTTP_HOST", b"localhost"),
    (b"HTTP_USER_AGENT", b"curl/7.88.1"),
)


def begin(request_id: int, role: int = Role.RESPONDER, flags: int = 0) -> bytes:
    return build_record(RecordType.BEGIN_REQUEST, request_id, struct.pack(">HB5x", role, flags))


def nginx_request(request_id: int = 1, flags: int = 0) -> bytes:
    return (
        begin(request_id, flags=flags)
        + build_record(RecordType.PARAMS, request_id, encode_pairs(NGINX_PARAMS))
        + build_record(RecordType.PARAMS, request_id)
        + build_record(RecordType.STDIN, request_id)
    )


def drain(connection: ServerConnection) -> list[object]:
    events = []
    while (event := connection.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


# -- decode_pairs against the spec read literally (§3.4) -------------------------------------


def reference_decode_pairs(data: bytes, *, max_pairs: int) -> list[tuple[bytes, bytes]]:
    """One length at a time, every check where the spec puts it: the decoder as first written."""
    pairs: list[tuple[bytes, bytes]] = []
    offset = 0
    lengths = [0, 0]
    while offset < len(data):
        for index in range(2):
            if offset >= len(data):
                raise RemoteProtocolError("name-value pair truncated inside a length (§3.4)")
            if data[offset] >> 7:
                if offset + 4 > len(data):
                    raise RemoteProtocolError("name-value pair truncated inside a length (§3.4)")
                lengths[index] = struct.unpack_from(">I", data, offset)[0] & 0x7FFFFFFF
                offset += 4
            else:
                lengths[index] = data[offset]
                offset += 1
        value_start = offset + lengths[0]
        value_end = value_start + lengths[1]
        if value_end > len(data):
            raise RemoteProtocolError("name-value pair runs past the end of its stream (§3.4)")
        if len(pairs) >= max_pairs:
            raise RemoteProtocolError(
                f"more than {max_pairs} params in one request", limit="max_params_count"
            )
        pairs.append((data[offset:value_start], data[value_start:value_end]))
        offset = value_end
    return pairs


def outcome(data: bytes, max_pairs: int, decode: object) -> object:
    assert callable(decode)
    try:
        return decode(data, max_pairs=max_pairs)
    except RemoteProtocolError as error:
        return ("error", str(error), error.limit)


#: Pair streams that reach every branch: short and long lengths, cut anywhere.
PAIR_STREAMS = st.lists(
    st.tuples(st.binary(max_size=140), st.binary(max_size=140)), max_size=6
).map(encode_pairs)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=60), PAIR_STREAMS),
    cut=st.integers(0, 400),
    max_pairs=st.integers(0, 8),
)
def test_decode_pairs_matches_the_reference_decoder(data: bytes, cut: int, max_pairs: int) -> None:
    """Same pairs, or the same error with the same message and limit, cut anywhere."""
    for stream in (data, data[:cut]):
        assert outcome(stream, max_pairs, decode_pairs) == outcome(
            stream, max_pairs, reference_decode_pairs
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encode_pairs([(b"A", b"1")]) + b"\x01\x05A", "past the end"),  # not the limit
        (encode_pairs([(b"A", b"1")]) + b"\x01", "inside a length"),
        (encode_pairs([(b"A", b"1")]) + b"\x81\x00", "inside a length"),
        (encode_pairs([(b"A", b"1"), (b"B", b"2")]), "more than 1 params"),
    ],
)
def test_a_malformed_pair_past_the_limit_is_reported_as_malformed(
    data: bytes, message: str
) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_pairs(data, max_pairs=1)


def test_decode_pairs_reads_the_long_form_for_either_length() -> None:
    pairs = [(b"N" * 200, b"v"), (b"n", b"V" * 300), (b"L" * 128, b"W" * 129), (b"", b"")]
    assert decode_pairs(encode_pairs(pairs), max_pairs=4) == pairs
    # §3.4 allows the four-byte form for short lengths too.
    assert decode_pairs(struct.pack(">II", 1 | 1 << 31, 2 | 1 << 31) + b"abc", max_pairs=1) == [
        (b"a", b"bc")
    ]


# -- the receive buffer ----------------------------------------------------------------------


def records_of(buffer: RecordBuffer) -> list[tuple[int, int, bytes]]:
    records = []
    while (record := buffer.next_record()) is not None:
        records.append(record)
    return records


def test_the_typical_nginx_request_whole_and_byte_by_byte() -> None:
    expected = [RequestStarted(1, Role.RESPONDER, False, NGINX_PARAMS), InputEnd(1)]
    connection = ServerConnection()
    connection.receive_data(nginx_request())
    assert drain(connection) == expected
    connection = ServerConnection()
    events: list[object] = []
    for byte in nginx_request():
        connection.receive_data(bytes((byte,)))
        events += drain(connection)
    assert events == expected
    started = events[0]
    assert isinstance(started, RequestStarted)
    assert all(type(value) is bytes for pair in started.params for value in pair)


@pytest.mark.parametrize("cut", range(1, 64, 3))
def test_records_split_across_reads_come_out_as_bytes(cut: int) -> None:
    wire = build_record(RecordType.STDIN, 1, b"abc") + build_record(RecordType.STDIN, 2, b"x" * 40)
    buffer = RecordBuffer()
    buffer.feed(wire[:cut])
    records = records_of(buffer)
    buffer.feed(wire[cut:])
    records += records_of(buffer)
    assert records == [(RecordType.STDIN, 1, b"abc"), (RecordType.STDIN, 2, b"x" * 40)]
    assert all(type(content) is bytes for _, _, content in records)
    assert buffer.buffered_bytes == 0


def test_a_callers_bytearray_is_copied_not_kept() -> None:
    """A caller may read into one bytearray again and again; what it fed must not change."""
    received = bytearray(build_record(RecordType.STDIN, 1, b"hello"))
    buffer = RecordBuffer()
    buffer.feed(received)  # type: ignore[arg-type]
    received[8:13] = b"XXXXX"
    assert records_of(buffer) == [(RecordType.STDIN, 1, b"hello")]


def test_a_record_straddling_reads_is_joined_to_the_next_read() -> None:
    first, second = (build_record(RecordType.STDIN, 1, bytes([n]) * 1000) for n in (1, 2))
    buffer = RecordBuffer()
    buffer.feed(first + second[:10])
    assert records_of(buffer) == [(RecordType.STDIN, 1, b"\x01" * 1000)]
    buffer.feed(second[10:])  # 10 bytes carried over, joined to a longer read
    assert isinstance(buffer._buffer, bytes)
    assert records_of(buffer) == [(RecordType.STDIN, 1, b"\x02" * 1000)]
    assert buffer.buffered_bytes == 0


def test_records_held_untaken_when_the_next_read_comes_are_kept() -> None:
    """A backend may feed again before taking the records: the whole ones held are not a
    straddling record, and none is lost."""
    first, second = (build_record(RecordType.STDIN, 1, bytes([n]) * 1000) for n in (1, 2))
    buffer = RecordBuffer()
    buffer.feed(first + second[:20])
    buffer.feed(second[20:])
    assert records_of(buffer) == [
        (RecordType.STDIN, 1, b"\x01" * 1000),
        (RecordType.STDIN, 1, b"\x02" * 1000),
    ]
    assert buffer.buffered_bytes == 0


def test_a_record_in_small_pieces_is_gathered_and_its_front_dropped() -> None:
    body = b"\xab" * 65535
    record = build_record(RecordType.STDIN, 1, body)
    buffer = RecordBuffer()
    buffer.feed(record[:100])
    buffer.feed(record[100:150])  # smaller than what is held: gathered in a bytearray
    assert isinstance(buffer._buffer, bytearray)
    buffer.feed(record[150:] + record[:5])
    assert records_of(buffer) == [(RecordType.STDIN, 1, body)]
    buffer.feed(record[5:100])  # more than _COMPACT_AFTER_BYTES taken: compacted first
    assert len(buffer._buffer) == 100 < _COMPACT_AFTER_BYTES
    buffer.feed(record[100:])
    assert records_of(buffer) == [(RecordType.STDIN, 1, body)]
    assert buffer.buffered_bytes == 0


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=300)),
        max_size=6,
    ),
    cuts=st.lists(st.integers(1, 700), min_size=1, max_size=12),
    mutable=st.booleans(),
    take_every=st.integers(1, 3),
)
def test_any_split_gives_the_records_the_whole_gives(
    records: list[tuple[int, int, bytes]], cuts: list[int], mutable: bool, take_every: int
) -> None:
    """Big reads, small reads and mixtures: every path of feed() against every other, the
    records taken after every read or only after some (whole records still held)."""
    wire = b"".join(build_record(kind, request_id, body) for kind, request_id, body in records)
    buffer = RecordBuffer()
    taken = []
    position = index = 0
    while position < len(wire):
        chunk = wire[position : position + cuts[index % len(cuts)]]
        position, index = position + len(chunk), index + 1
        buffer.feed(bytearray(chunk) if mutable else chunk)  # type: ignore[arg-type]
        if index % take_every == 0:
            taken += records_of(buffer)
    taken += records_of(buffer)
    assert taken == records
    assert all(type(content) is bytes for _, _, content in taken)
    assert buffer.buffered_bytes == 0


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=700)),
        min_size=1,
        max_size=4,
    ),
    version=st.sampled_from([1, 1, 1, 0, 2, 255]),
)
def test_headers_read_byte_by_byte_as_struct_reads_them(
    records: list[tuple[int, int, bytes]], version: int
) -> None:
    """The compiled build reads a header byte by byte, the interpreter with struct (framing's
    _COMPILED): the same records and the same refusal of another version either way. In the
    pure build this runs both readers; in the compiled one the byte reader twice."""
    wire = b"".join(build_record(kind, request_id, body) for kind, request_id, body in records)
    wire = bytes([version]) + wire[1:]

    def read(compiled: bool) -> list[tuple[int, int, bytes]] | str:
        was = framing._COMPILED
        framing._COMPILED = compiled  # type: ignore[misc]
        buffer = RecordBuffer()
        buffer.feed(wire)
        try:
            return records_of(buffer)
        except RemoteProtocolError as error:
            return str(error)
        finally:
            framing._COMPILED = was  # type: ignore[misc]

    by_bytes, by_struct = read(True), read(False)
    assert by_bytes == by_struct
    assert by_bytes == (
        records if version == 1 else f"unsupported FastCGI version {version} (expected 1)"
    )


def test_parse_header_refuses_other_versions() -> None:
    with pytest.raises(RemoteProtocolError, match="version 2"):
        parse_header(b"\x02" + build_record(RecordType.STDIN, 1)[1:])


# -- PARAMS kept as they came, or gathered (§5.2) --------------------------------------------


@pytest.mark.parametrize("pieces", [1, 2, 3, 417])
def test_params_in_any_number_of_records(pieces: int) -> None:
    encoded = encode_pairs(NGINX_PARAMS)
    step = -(-len(encoded) // pieces)
    chunks = [encoded[start : start + step] for start in range(0, len(encoded), step)]
    wire = begin(1) + b"".join(build_record(RecordType.PARAMS, 1, chunk) for chunk in chunks)
    connection = ServerConnection()
    connection.receive_data(wire + build_record(RecordType.PARAMS, 1))
    assert drain(connection) == [RequestStarted(1, Role.RESPONDER, False, NGINX_PARAMS)]


def test_max_params_bytes_counts_gathered_params() -> None:
    connection = ServerConnection(ProtocolSettings(max_params_bytes=10))
    connection.receive_data(begin(1) + build_record(RecordType.PARAMS, 1, b"\x01\x01ab") * 2)
    assert drain(connection) == []
    connection.receive_data(build_record(RecordType.PARAMS, 1, b"\x01\x01ab"))
    with pytest.raises(RemoteProtocolError) as caught:
        drain(connection)
    assert caught.value.limit == "max_params_bytes"


def test_connections_without_settings_share_the_defaults() -> None:
    first, second = ServerConnection(), ServerConnection()
    assert first.settings is second.settings
    assert first.settings == ProtocolSettings()
    own = ProtocolSettings(max_params_count=3)
    assert ServerConnection(own).settings is own


# -- errors in the order they were always reported --------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # For an active request, records its row does not accept go by their type.
        (begin(1) + build_record(RecordType.STDOUT, 1, b"x"), "STDOUT record sent to the app"),
        (begin(1) + build_record(RecordType.GET_VALUES, 1), "non-null request id"),
        (begin(1) + begin(1), "already active"),
        (begin(1) + build_record(RecordType.STDIN, 1), "STDIN record for request 1 while"),
        # The null request id before anything about the record's body.
        (build_record(RecordType.BEGIN_REQUEST, 0, b"short"), "BEGIN_REQUEST record with the null"),
        (build_record(RecordType.ABORT_REQUEST, 0), "ABORT_REQUEST record with the null"),
        (build_record(RecordType.DATA, 0), "DATA record with the null"),
        (build_record(RecordType.END_REQUEST, 0, bytes(8)), "END_REQUEST record sent to the"),
    ],
)
def test_errors_keep_their_precedence(data: bytes, message: str) -> None:
    connection = ServerConnection()
    connection.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=message):
        drain(connection)


def test_unknown_type_for_an_active_request_is_ignored() -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1) + build_record(200, 1, b"?") + nginx_request(2))
    assert [type(e) for e in drain(connection)] == [RequestStarted, InputEnd]
    assert connection.data_to_send() == b""


# -- sending ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [*range(20), 65527, 65528, 65529, 65535, 65536, 3 * 65528 + 1])
def test_stream_records_match_build_record(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = b"".join(
        build_record(RecordType.STDOUT, 3, data[start : start + 65528])
        for start in range(0, size, 65528)
    )
    assert build_stream_records(RecordType.STDOUT, 3, data) == expected


@pytest.mark.parametrize("stderr_used", [False, True])
@pytest.mark.parametrize("request_id", [1, 63, 64, 258, 0xFFFF])
@pytest.mark.parametrize(("app_status", "status"), [(0, 0), (938, 2), (0xFFFFFFFF, 3)])
def test_end_of_response_matches_build_record(
    stderr_used: bool, request_id: int, app_status: int, status: int
) -> None:
    expected = build_record(RecordType.STDOUT, request_id)
    if stderr_used:
        expected += build_record(RecordType.STDERR, request_id)
    expected += build_record(
        RecordType.END_REQUEST, request_id, struct.pack(">IB3x", app_status, status)
    )
    assert (
        build_end_of_response(request_id, app_status, status, stderr_used=stderr_used) == expected
    )


def test_keep_alive_cycle_on_one_connection() -> None:
    connection = ServerConnection()
    for _ in range(3):
        connection.receive_data(nginx_request(flags=1))
        assert drain(connection)[0] == RequestStarted(1, Role.RESPONDER, True, NGINX_PARAMS)
        reply = connection.send(OutputData(1, b"Status: 200 OK\r\n\r\nhi"))
        reply += connection.send(EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE))
        assert reply.endswith(build_record(RecordType.END_REQUEST, 1, bytes(8)))
        assert connection.active_requests == 0
        assert not connection.should_close


# -- the int tables mirror the enums -------------------------------------------------------


def test_int_constants_and_lookups_mirror_the_enums() -> None:
    for record_type in RecordType:
        assert getattr(constants, f"FCGI_{record_type.name}") == record_type
        assert constants.RECORD_TYPES[record_type] is record_type
    assert {int(role): role for role in Role} == constants.ROLES
    assert set(constants.RECORD_TYPES) == constants.KNOWN_TYPES


def test_accepts_is_transitions_by_row() -> None:
    rebuilt = {
        (role, state, record_type): action
        for (role, state), row in ACCEPTS.items()
        for record_type, action in row.items()
    }
    assert rebuilt == TRANSITIONS
    assert set(ACCEPTS) == {(role, state) for role in Role for state in InputState}


def test_input_states_hash_by_identity_and_equal_only_themselves() -> None:
    states = {state: state.value for state in InputState}
    assert len(states) == len(InputState)
    assert all(states[state] == state.value for state in InputState)
    assert InputState.PARAMS != "PARAMS"
    assert InputState("STDIN") is InputState.STDIN
