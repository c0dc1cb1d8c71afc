"""Hypothesis properties: any input ends in events or RemoteProtocolError, never anything else
and never a hang; valid requests round-trip exactly whatever the record splits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fcgigw.protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    EndRequest,
    InputData,
    InputEnd,
    OutputData,
    ProtocolSettings,
    RemoteProtocolError,
    RequestStarted,
    Role,
    ServerConnection,
)
from fcgigw.protocol.constants import RecordType

CHUNKINGS = st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20)


def feed_in_chunks(
    connection: ServerConnection | ClientConnection, data: bytes, cuts: list[int]
) -> int:
    """Feed ``data`` in chunks sized by ``cuts`` (cycled), then EOF; count events. Returns
    when the connection closes or errors; the loop is bounded by the input's length."""
    events = 0
    position = 0
    index = 0
    while position < len(data):
        size = cuts[index % len(cuts)]
        connection.receive_data(data[position : position + size])
        position += size
        index += 1
        while connection.next_event() is not NEED_DATA:
            events += 1
            assert events <= len(data) + 1
    connection.receive_data(b"")
    for _ in range(len(data) + 2):
        if isinstance(connection.next_event(), ConnectionClosed):
            return events
        events += 1
    raise AssertionError("no ConnectionClosed after EOF")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), cuts=CHUNKINGS)
def test_server_any_bytes_parse_or_raise_remote_protocol_error(
    data: bytes, cuts: list[int]
) -> None:
    try:
        feed_in_chunks(ServerConnection(ProtocolSettings(max_params_bytes=256)), data, cuts)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 3), st.binary(max_size=40)), max_size=8
    ),
    cuts=CHUNKINGS,
)
def test_server_random_records_parse_or_raise(
    records: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    """Well-framed records of random types and contents: the state machine, not the framing."""
    from fcgigw.protocol import build_record

    data = b"".join(build_record(t % 12, rid, body) for t, rid, body in records)
    try:
        feed_in_chunks(ServerConnection(), data, cuts)
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), cuts=CHUNKINGS)
def test_client_any_bytes_parse_or_raise_remote_protocol_error(
    data: bytes, cuts: list[int]
) -> None:
    client = ClientConnection()
    client.send(RequestStarted(1, Role.RESPONDER, True, ()))
    try:
        feed_in_chunks(client, data, cuts)
    except RemoteProtocolError:
        pass


PARAM_BYTES = st.binary(min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(
    params=st.lists(st.tuples(PARAM_BYTES, st.binary(max_size=300)), max_size=12),
    body=st.lists(st.binary(min_size=1, max_size=2000), max_size=6),
    cuts=CHUNKINGS,
    role=st.sampled_from([Role.RESPONDER, Role.FILTER]),
    keep=st.booleans(),
)
def test_requests_round_trip_exactly(
    params: list[tuple[bytes, bytes]],
    body: list[bytes],
    cuts: list[int],
    role: Role,
    keep: bool,
) -> None:
    client = ClientConnection()
    wire = client.send(RequestStarted(7, role, keep, tuple(params)))
    for chunk in body:
        wire += client.send(InputData(7, chunk))
    wire += client.send(InputEnd(7))
    if role is Role.FILTER:
        wire += client.send(InputData(7, b"data stream", RecordType.DATA))
        wire += client.send(InputEnd(7, RecordType.DATA))
    server = ServerConnection()
    received: list[object] = []
    position = index = 0
    while position < len(wire):
        size = cuts[index % len(cuts)]
        server.receive_data(wire[position : position + size])
        position, index = position + size, index + 1
        while (event := server.next_event()) is not NEED_DATA:
            received.append(event)
    assert received[0] == RequestStarted(7, role, keep, tuple(params))
    stdin = b"".join(
        e.data for e in received if isinstance(e, InputData) and e.stream is RecordType.STDIN
    )
    assert stdin == b"".join(body)
    reply = server.send(OutputData(7, b"Status: 200 OK\r\n\r\n" + stdin)) + server.send(
        EndRequest(7)
    )
    client.receive_data(reply)
    out = b""
    while not isinstance(event := client.next_event(), EndRequest):
        if isinstance(event, OutputData):
            out += event.data
    assert out.endswith(stdin)
    assert server.should_close is not keep
