"""ServerConnection: bytes from a web server in, events out (whole, byte by byte, and with the
next record's bytes trailing), and what the application side sends back."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import pytest

from fcgigw.protocol import (
    NEED_DATA,
    AbortRequest,
    ClientConnection,
    ConnectionClosed,
    EndRequest,
    GetValues,
    GetValuesResult,
    InputData,
    InputEnd,
    InputEndedShort,
    LocalProtocolError,
    OutputData,
    OutputEnd,
    ProtocolSettings,
    ProtocolStatus,
    RecordType,
    RemoteProtocolError,
    RequestStarted,
    Role,
    ServerConnection,
    UnknownType,
    build_record,
    encode_pairs,
)
from fcgigw.protocol.state import InputState

PARAMS = ((b"SERVER_PORT", b"80"), (b"SERVER_ADDR", b"199.170.183.42"))


def begin(request_id: int, role: int = Role.RESPONDER, flags: int = 0) -> bytes:
    return build_record(RecordType.BEGIN_REQUEST, request_id, struct.pack(">HB5x", role, flags))


def params(request_id: int, pairs: Sequence[tuple[bytes, bytes]] = PARAMS) -> bytes:
    return build_record(RecordType.PARAMS, request_id, encode_pairs(pairs)) + build_record(
        RecordType.PARAMS, request_id
    )


def stdin(request_id: int, data: bytes = b"") -> bytes:
    body = build_record(RecordType.STDIN, request_id, data) if data else b""
    return body + build_record(RecordType.STDIN, request_id)


def drain(connection: ServerConnection) -> list[object]:
    events = []
    while (event := connection.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def events_all_ways(
    data: bytes, settings: ProtocolSettings | None = None
) -> tuple[list[object], ServerConnection]:
    """Feed ``data`` whole, one byte at a time, and with the next record's first bytes after
    it; all three must give the same events (h11's approach)."""
    results = []
    for mode in ("whole", "bytewise", "trailing"):
        connection = ServerConnection(settings)
        events: list[object] = []
        if mode == "bytewise":
            for index in range(len(data)):
                connection.receive_data(data[index : index + 1])
                events += drain(connection)
        else:
            connection.receive_data(data + (begin(99)[:5] if mode == "trailing" else b""))
            events += drain(connection)
        results.append((events, connection))
    assert results[0][0] == results[1][0] == results[2][0]
    return results[0]


# -- the spec's Appendix B flows -------------------------------------------------------------


def test_appendix_b_1_simple_request() -> None:
    events, connection = events_all_ways(begin(1) + params(1) + stdin(1))
    assert events == [
        RequestStarted(1, Role.RESPONDER, False, PARAMS),
        InputEnd(1, RecordType.STDIN),
    ]
    reply = connection.send(OutputData(1, b"Content-type: text/html\r\n\r\n<html>"))
    reply += connection.send(EndRequest(1))
    client = ClientConnection()
    client.send(RequestStarted(1, Role.RESPONDER, False, ()))
    client.receive_data(reply)
    assert [client.next_event() for _ in range(3)] == [
        OutputData(1, b"Content-type: text/html\r\n\r\n<html>"),
        OutputEnd(1, RecordType.STDOUT),
        EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE),
    ]
    assert connection.should_close  # no FCGI_KEEP_CONN: §5.1


def test_appendix_b_2_params_split_and_stdin_data() -> None:
    encoded = encode_pairs(PARAMS)
    data = (
        begin(1)
        + build_record(RecordType.PARAMS, 1, encoded[:17])
        + build_record(RecordType.PARAMS, 1, encoded[17:])
        + build_record(RecordType.PARAMS, 1)
        + stdin(1, b"quantity=100&item=3047936")
    )
    events, _ = events_all_ways(data)
    assert events == [
        RequestStarted(1, Role.RESPONDER, False, PARAMS),
        InputData(1, b"quantity=100&item=3047936"),
        InputEnd(1),
    ]


def test_appendix_b_3_stderr_and_app_status_on_the_wire() -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1) + params(1) + stdin(1))
    drain(connection)
    out = connection.send(OutputData(1, b"Content-type: text/html\r\n\r\n<ht"))
    out += connection.send(OutputData(1, b"config error: missing SI_UID\n", RecordType.STDERR))
    out += connection.send(OutputData(1, b"ml>\n<head> ... "))
    out += connection.send(EndRequest(1, 938))
    # the last three records: empty STDOUT, empty STDERR (it was used), END_REQUEST
    assert out.endswith(
        build_record(RecordType.STDOUT, 1)
        + build_record(RecordType.STDERR, 1)
        + build_record(RecordType.END_REQUEST, 1, struct.pack(">IB3x", 938, 0))
    )


def test_appendix_b_4_multiplexed_requests() -> None:
    data = (
        begin(1, flags=1)
        + params(1)
        + begin(2, flags=1)
        + build_record(RecordType.PARAMS, 2, encode_pairs(PARAMS))
        + stdin(1)
        + build_record(RecordType.PARAMS, 2)
        + stdin(2)
    )
    events, connection = events_all_ways(data)
    assert events == [
        RequestStarted(1, Role.RESPONDER, True, PARAMS),
        InputEnd(1),
        RequestStarted(2, Role.RESPONDER, True, PARAMS),
        InputEnd(2),
    ]
    assert connection.active_requests == 2
    connection.send(EndRequest(2))
    assert connection.input_state(2) is None
    assert connection.input_state(1) is InputState.INPUT_DONE
    connection.send(EndRequest(1))
    assert not connection.should_close  # both kept the connection


def test_stderr_terminator_only_when_stderr_was_used() -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1) + params(1) + stdin(1))
    drain(connection)
    connection.send(OutputData(1, b"", RecordType.STDERR))  # empty: nothing sent, not "used"
    assert connection.send(EndRequest(1)) == build_record(RecordType.STDOUT, 1) + build_record(
        RecordType.END_REQUEST, 1, bytes(8)
    )


# -- splits, padding, limits -----------------------------------------------------------------


def test_params_split_at_every_offset_including_inside_lengths() -> None:
    pairs = ((b"N" * 130, b"v" * 200), (b"A", b"b"), (b"EMPTY", b""))
    encoded = encode_pairs(pairs)
    for cut in range(1, len(encoded)):
        data = (
            begin(1)
            + build_record(RecordType.PARAMS, 1, encoded[:cut])
            + build_record(RecordType.PARAMS, 1, encoded[cut:])
            + build_record(RecordType.PARAMS, 1)
        )
        connection = ServerConnection()
        connection.receive_data(data)
        assert drain(connection) == [RequestStarted(1, Role.RESPONDER, False, pairs)]


def test_peer_padding_up_to_255_bytes_is_skipped() -> None:
    content = struct.pack(">HB5x", Role.RESPONDER, 0)
    padded = struct.pack(">BBHHBx", 1, RecordType.BEGIN_REQUEST, 1, len(content), 255)
    data = padded + content + bytes(255) + params(1) + stdin(1, b"body")
    events, _ = events_all_ways(data)
    assert events[0] == RequestStarted(1, Role.RESPONDER, False, PARAMS)
    assert events[1] == InputData(1, b"body")


def test_outgoing_records_are_padded_to_eight_bytes() -> None:
    for size in range(20):
        record = build_record(RecordType.STDOUT, 1, b"x" * size)
        assert len(record) % 8 == 0
        assert record[6] == (-size) & 7


def test_params_over_max_params_bytes_name_the_limit() -> None:
    settings = ProtocolSettings(max_params_bytes=100)
    connection = ServerConnection(settings)
    connection.receive_data(begin(1) + params(1, ((b"X", b"y" * 200),)))
    with pytest.raises(RemoteProtocolError) as caught:
        drain(connection)
    assert caught.value.limit == "max_params_bytes"


def test_params_over_max_params_count_name_the_limit() -> None:
    connection = ServerConnection(ProtocolSettings(max_params_count=3))
    connection.receive_data(begin(1) + params(1, tuple((b"A", b"") for _ in range(4))))
    with pytest.raises(RemoteProtocolError) as caught:
        drain(connection)
    assert caught.value.limit == "max_params_count"


# -- management records ----------------------------------------------------------------------


def test_get_values_reports_configured_values_and_omits_unknown_names() -> None:
    settings = ProtocolSettings(max_connections=7, max_requests=3, multiplex_connections=False)
    connection = ServerConnection(settings)
    names = [b"FCGI_MAX_CONNS", b"NOT_A_VARIABLE", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"]
    query = encode_pairs((name, b"") for name in names)
    connection.receive_data(build_record(RecordType.GET_VALUES, 0, query))
    assert drain(connection) == []
    client = ClientConnection()
    client.receive_data(connection.data_to_send())
    assert client.next_event() == GetValuesResult(
        ((b"FCGI_MAX_CONNS", b"7"), (b"FCGI_MAX_REQS", b"3"), (b"FCGI_MPXS_CONNS", b"0"))
    )
    assert connection.data_to_send() == b""


def test_get_values_says_multiplexing_is_on_by_default() -> None:
    connection = ServerConnection()
    connection.receive_data(ClientConnection().send(GetValues((b"FCGI_MPXS_CONNS",))))
    drain(connection)
    client = ClientConnection()
    client.receive_data(connection.data_to_send())
    assert client.next_event() == GetValuesResult(((b"FCGI_MPXS_CONNS", b"1"),))


def test_unknown_management_type_is_answered_and_the_connection_stays_usable() -> None:
    events, connection = events_all_ways(build_record(42, 0, b"?") + begin(1) + params(1))
    assert events == [RequestStarted(1, Role.RESPONDER, False, PARAMS)]
    assert connection.data_to_send() == build_record(
        RecordType.UNKNOWN_TYPE, 0, bytes((42, 0, 0, 0, 0, 0, 0, 0))
    )


def test_unknown_type_on_a_request_id_is_ignored() -> None:
    events, connection = events_all_ways(build_record(200, 5, b"??") + begin(1) + params(1))
    assert events == [RequestStarted(1, Role.RESPONDER, False, PARAMS)]
    assert connection.data_to_send() == b""


# -- refusals --------------------------------------------------------------------------------


def end_record(request_id: int, status: ProtocolStatus) -> bytes:
    return build_record(RecordType.END_REQUEST, request_id, struct.pack(">IB3x", 0, status))


def test_cant_mpx_conn_when_multiplexing_is_off_and_the_refused_id_is_ignored() -> None:
    connection = ServerConnection(ProtocolSettings(multiplex_connections=False))
    data = begin(1, flags=1) + params(1) + begin(2, flags=1) + params(2) + stdin(2) + stdin(1)
    connection.receive_data(data)
    assert drain(connection) == [RequestStarted(1, Role.RESPONDER, True, PARAMS), InputEnd(1)]
    assert connection.data_to_send() == end_record(2, ProtocolStatus.CANT_MPX_CONN)
    assert connection.active_requests == 1


def test_overloaded_past_the_per_connection_limit() -> None:
    connection = ServerConnection(ProtocolSettings(max_concurrent_requests_per_connection=1))
    connection.receive_data(begin(1, flags=1) + begin(2, flags=1))
    assert drain(connection) == []
    assert connection.data_to_send() == end_record(2, ProtocolStatus.OVERLOADED)


@pytest.mark.parametrize("role", [Role.AUTHORIZER, 0, 4, 0xFFFF])
def test_unknown_role_for_roles_not_enabled_or_not_defined(role: int) -> None:
    connection = ServerConnection(ProtocolSettings(roles=frozenset({Role.RESPONDER})))
    connection.receive_data(begin(1, role=role) + params(1) + stdin(1) + begin(2) + params(2))
    assert drain(connection) == [RequestStarted(2, Role.RESPONDER, False, PARAMS)]
    assert connection.data_to_send() == end_record(1, ProtocolStatus.UNKNOWN_ROLE)


def test_refusing_a_request_without_keep_conn_closes_once_idle() -> None:
    connection = ServerConnection(ProtocolSettings(roles=frozenset({Role.RESPONDER})))
    connection.receive_data(begin(1, role=Role.FILTER))
    drain(connection)
    assert connection.should_close


# -- request lifecycle -----------------------------------------------------------------------


def test_nginx_early_response_then_stray_stdin_then_id_1_again() -> None:
    """nginx keeps sending STDIN after an early END_REQUEST, then reuses id 1 (§2)."""
    connection = ServerConnection()
    connection.receive_data(begin(1, flags=1) + params(1) + build_record(RecordType.STDIN, 1, b"a"))
    assert drain(connection)[-1] == InputData(1, b"a")
    connection.send(EndRequest(1))
    connection.receive_data(stdin(1, b"rest of the body") + begin(1, flags=1) + params(1))
    assert drain(connection) == [RequestStarted(1, Role.RESPONDER, True, PARAMS)]


def test_abort_before_params_are_complete_is_answered_by_the_core() -> None:
    connection = ServerConnection()
    connection.receive_data(
        begin(1, flags=1)
        + build_record(RecordType.PARAMS, 1, b"\x01")
        + build_record(RecordType.ABORT_REQUEST, 1)
    )
    assert drain(connection) == []
    assert connection.data_to_send() == end_record(1, ProtocolStatus.REQUEST_COMPLETE)
    assert connection.active_requests == 0
    assert not connection.should_close


def test_abort_without_keep_conn_before_start_closes_once_idle() -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1) + build_record(RecordType.ABORT_REQUEST, 1))
    drain(connection)
    assert connection.should_close


def test_abort_after_start_reaches_the_app_and_later_input_is_dropped() -> None:
    connection = ServerConnection()
    connection.receive_data(
        begin(1)
        + params(1)
        + build_record(RecordType.ABORT_REQUEST, 1)
        + stdin(1, b"late")
        + build_record(RecordType.ABORT_REQUEST, 1)
        + build_record(RecordType.PARAMS, 1)
    )
    assert drain(connection) == [RequestStarted(1, Role.RESPONDER, False, PARAMS), AbortRequest(1)]
    assert connection.input_state(1) is InputState.ABORTED
    assert connection.send(EndRequest(1)).endswith(end_record(1, ProtocolStatus.REQUEST_COMPLETE))


def test_authorizer_input_ends_with_params_and_lighttpds_empty_stdin_is_discarded() -> None:
    data = begin(1, role=Role.AUTHORIZER) + params(1) + stdin(1, b"ignored")
    events, connection = events_all_ways(data)
    assert events == [RequestStarted(1, Role.AUTHORIZER, False, PARAMS), InputEnd(1)]
    assert connection.input_state(1) is InputState.INPUT_DONE


def test_filter_gets_stdin_then_data() -> None:
    data = (
        begin(1, role=Role.FILTER)
        + params(1)
        + stdin(1, b"form")
        + build_record(RecordType.DATA, 1, b"file bytes")
        + build_record(RecordType.DATA, 1)
    )
    events, _ = events_all_ways(data)
    assert events == [
        RequestStarted(1, Role.FILTER, False, PARAMS),
        InputData(1, b"form"),
        InputEnd(1),
        InputData(1, b"file bytes", RecordType.DATA),
        InputEnd(1, RecordType.DATA),
    ]


# -- a Responder's body against its CONTENT_LENGTH (§6.2) -----------------------------------


def with_length(length: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return (*PARAMS, (b"CONTENT_LENGTH", length))


def stdin_record(request_id: int, data: bytes = b"") -> bytes:
    return build_record(RecordType.STDIN, request_id, data)


def test_empty_stdin_records_before_content_length_are_not_the_end() -> None:
    """mod_fcgid sends an empty STDIN record for each pause of an HTTP/2 client's upload,
    then the rest of the body: the body ends with its last promised byte. Each early record
    is told (InputEndedShort: the bytes still missing), for the server core to decide how
    long to wait for the rest."""
    sent = with_length(b"9")
    data = (
        begin(1, flags=1)
        + params(1, sent)
        + stdin_record(1)
        + stdin_record(1, b"four")
        + stdin_record(1)
        + stdin_record(1, b"five!")
        + stdin_record(1)
        + begin(2, flags=1)
    )
    events, connection = events_all_ways(data)
    assert events == [
        RequestStarted(1, Role.RESPONDER, True, sent),
        InputEndedShort(1, 9),
        InputData(1, b"four"),
        InputEndedShort(1, 5),
        InputData(1, b"five!"),
        InputEnd(1, RecordType.STDIN, at_length=True),
        InputEnd(1),  # the stream's own end, after the body's
    ]
    assert connection.input_state(1) is InputState.INPUT_DONE
    assert connection.input_state(2) is InputState.PARAMS


def test_a_body_that_ends_short_of_its_length_is_told_and_may_go_on() -> None:
    """libfcgi's cgi-fcgi sends what its stdin gave, then the empty record, when the client
    sent less than CONTENT_LENGTH (§6.2): the event says how much is missing, and the
    request still takes STDIN (the server core gives it up after a silence)."""
    sent = with_length(b"10")
    connection = ServerConnection()
    connection.receive_data(begin(1) + params(1, sent) + stdin(1, b"part"))
    assert drain(connection) == [
        RequestStarted(1, Role.RESPONDER, False, sent),
        InputData(1, b"part"),
        InputEndedShort(1, 6),
    ]
    assert connection.input_state(1) is InputState.STDIN


def test_a_body_ends_at_its_length_without_its_empty_record() -> None:
    """HAProxy 2.6 now and then leaves out the empty record after an HTTP/2 body: the app
    gets the end of its body anyway, and the connection serves the next request."""
    sent = with_length(b"5")
    events, connection = events_all_ways(
        begin(1, flags=1) + params(1, sent) + stdin_record(1, b"hello")
    )
    assert events == [
        RequestStarted(1, Role.RESPONDER, True, sent),
        InputData(1, b"hello"),
        InputEnd(1, at_length=True),
    ]
    connection.send(EndRequest(1))
    connection.receive_data(begin(1, flags=1) + params(1) + stdin(1))
    assert drain(connection) == [RequestStarted(1, Role.RESPONDER, True, PARAMS), InputEnd(1)]


def test_stdin_past_a_complete_body_is_a_protocol_error() -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1) + params(1, with_length(b"2")) + stdin_record(1, b"ok"))
    drain(connection)
    connection.receive_data(stdin_record(1, b"more"))
    with pytest.raises(RemoteProtocolError, match="beyond its CONTENT_LENGTH"):
        connection.next_event()


@pytest.mark.parametrize(
    "length",
    [b"", b"0", b"-1", b"x", b"99999999999999999999", None],
    ids=["nginx-get", "zero", "caddy", "junk", "huge", "absent"],
)
def test_without_a_usable_length_the_empty_record_ends_the_body(length: bytes | None) -> None:
    sent = PARAMS if length is None else with_length(length)
    events, _ = events_all_ways(begin(1) + params(1, sent) + stdin(1, b"body"))
    assert events == [
        RequestStarted(1, Role.RESPONDER, False, sent),
        InputData(1, b"body"),
        InputEnd(1),
    ]


def test_a_body_longer_than_its_length_ends_at_its_empty_record() -> None:
    """A record that runs past CONTENT_LENGTH: all of it goes to the app, as before."""
    sent = with_length(b"3")
    events, _ = events_all_ways(begin(1) + params(1, sent) + stdin(1, b"abcdef"))
    assert events[1:] == [InputData(1, b"abcdef"), InputEnd(1)]


def test_a_filters_stdin_still_ends_at_its_empty_record() -> None:
    sent = with_length(b"100")
    data = begin(1, role=Role.FILTER) + params(1, sent) + stdin(1, b"short")
    data += build_record(RecordType.DATA, 1)
    events, _ = events_all_ways(data)
    assert events == [
        RequestStarted(1, Role.FILTER, False, sent),
        InputData(1, b"short"),
        InputEnd(1),
        InputEnd(1, RecordType.DATA),
    ]


@pytest.mark.parametrize(
    "data",
    [
        begin(1, role=Role.FILTER) + params(1) + build_record(RecordType.DATA, 1, b"early"),
        begin(1) + params(1) + build_record(RecordType.PARAMS, 1, b"again"),
        begin(1) + params(1) + stdin(1) + stdin(1, b"after the end"),
        begin(1) + build_record(RecordType.STDIN, 1, b"before params"),
        begin(1) + params(1) + build_record(RecordType.DATA, 1, b"responders get no DATA"),
    ],
    ids=[
        "data-before-stdin-ended",
        "params-after-params",
        "stdin-after-end",
        "stdin-first",
        "data",
    ],
)
def test_records_out_of_sequence_are_protocol_errors(data: bytes) -> None:
    connection = ServerConnection()
    connection.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        drain(connection)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x02" + begin(1)[1:], "version 2"),
        (build_record(RecordType.STDOUT, 1, b"x"), "STDOUT record sent to the application"),
        (build_record(RecordType.END_REQUEST, 1, bytes(8)), "END_REQUEST"),
        (build_record(RecordType.GET_VALUES, 3), "non-null request id"),
        (build_record(RecordType.STDIN, 0, b"x"), "null request id"),
        (build_record(RecordType.BEGIN_REQUEST, 1, b"short"), "not 8"),
        (begin(1) + begin(1), "already active"),
    ],
)
def test_malformed_records_are_remote_protocol_errors(data: bytes, message: str) -> None:
    connection = ServerConnection()
    connection.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=message):
        drain(connection)


# -- end of stream ---------------------------------------------------------------------------


def test_eof_at_a_record_boundary_is_connection_closed() -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1, flags=1))
    connection.receive_data(b"")
    assert drain(connection) == [ConnectionClosed()]
    assert connection.next_event() == ConnectionClosed()


@pytest.mark.parametrize("cut", [3, 8, 12])
def test_eof_inside_a_record_is_a_protocol_error(cut: int) -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1)[:cut])
    assert connection.next_event() is NEED_DATA
    assert connection.buffered_bytes == cut
    connection.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="inside a record"):
        connection.next_event()


def test_data_after_eof_is_an_error() -> None:
    connection = ServerConnection()
    connection.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        connection.receive_data(b"more")


def test_large_buffers_are_compacted_without_losing_records() -> None:
    body = b"\xab" * 65535  # the largest record: 64 KiB + header + padding per record
    connection = ServerConnection()
    connection.receive_data(begin(1) + params(1) + build_record(RecordType.STDIN, 1, body))
    first = drain(connection)  # consumes past the compaction threshold
    tail = build_record(RecordType.STDIN, 1, body) + build_record(RecordType.STDIN, 1)
    connection.receive_data(tail[:100])  # compacts the consumed front away
    connection.receive_data(tail[100:])
    events = first + drain(connection)
    assert [e.data for e in events if isinstance(e, InputData)] == [body, body]
    assert events[-1] == InputEnd(1)
    assert connection.buffered_bytes == 0


# -- sending mistakes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: OutputData(9, b"x"), "not active"),
        (lambda: EndRequest(9), "not active"),
        (lambda: OutputData(1, b"x", RecordType.STDIN), "cannot send STDIN"),
        (lambda: EndRequest(1, -1), "four bytes"),
        (lambda: EndRequest(1, 2**32), "four bytes"),
    ],
)
def test_send_misuse_is_a_local_protocol_error(make: Callable[[], object], message: str) -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1) + params(1))
    drain(connection)
    with pytest.raises(LocalProtocolError, match=message):
        connection.send(make())  # type: ignore[arg-type]


def test_sending_before_params_complete_is_a_local_error() -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1))
    drain(connection)
    with pytest.raises(LocalProtocolError):
        connection.send(OutputData(1, b"too early"))


def test_large_output_is_split_into_records_of_at_most_65535_bytes() -> None:
    connection = ServerConnection()
    connection.receive_data(begin(1) + params(1))
    drain(connection)
    payload = bytes(range(256)) * 800  # 204800 bytes
    client = ClientConnection()
    client.send(RequestStarted(1, Role.RESPONDER, False, ()))
    client.receive_data(connection.send(OutputData(1, payload)) + connection.send(EndRequest(1)))
    chunks = []
    while isinstance(event := client.next_event(), OutputData):
        chunks.append(event.data)
    assert b"".join(chunks) == payload
    assert max(map(len, chunks)) <= 65535
    assert len(chunks) == 4


def test_unknown_type_event_exists_for_clients() -> None:
    assert UnknownType(5).record_type == 5
    assert repr(NEED_DATA) == "NEED_DATA"


@pytest.mark.parametrize(("stdout", "app_status"), [(b"Status: 200 OK\r\n\r\nhi", 0), (b"", 3)])
def test_end_response_is_the_last_stdout_and_end_request_in_one_buffer(
    stdout: bytes, app_status: int
) -> None:
    """end_response() (the servers' end of every response) gives exactly the bytes of
    send(OutputData) + send(EndRequest), and ends the request the same way."""
    by_events, by_end_response = ServerConnection(), ServerConnection()
    for connection in (by_events, by_end_response):
        connection.receive_data(begin(1) + params(1))
        drain(connection)
    expected = by_events.send(OutputData(1, stdout)) + by_events.send(EndRequest(1, app_status))
    assert by_end_response.end_response(1, stdout, app_status) == expected
    assert by_end_response.should_close
    assert by_end_response.active_requests == 0
    with pytest.raises(LocalProtocolError, match="not active"):
        by_end_response.end_response(1, b"again")
