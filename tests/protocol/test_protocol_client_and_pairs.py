"""ClientConnection (the web-server side), name-value pairs and record framing."""

from __future__ import annotations

import struct

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
    LocalProtocolError,
    OutputData,
    OutputEnd,
    ProtocolStatus,
    RecordType,
    RemoteProtocolError,
    RequestStarted,
    Role,
    UnknownType,
    build_record,
    decode_pairs,
    encode_pairs,
)
from fcgigw.protocol.pairs import _encode_length
from fcgigw.protocol.records import build_stream_records, parse_header


def started_client(*request_ids: int) -> ClientConnection:
    client = ClientConnection()
    for request_id in request_ids:
        client.send(RequestStarted(request_id, Role.RESPONDER, True, ()))
    return client


# -- pairs (§3.4) ----------------------------------------------------------------------------


def test_lengths_up_to_127_take_one_byte_and_longer_ones_four() -> None:
    assert encode_pairs([(b"N" * 127, b"v")])[:2] == bytes((127, 1))
    long_form = encode_pairs([(b"N" * 128, b"v" * 300)])
    assert long_form[:8] == struct.pack(">II", 128 | 0x80000000, 300 | 0x80000000)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 70000])
def test_pairs_round_trip(size: int) -> None:
    pairs = [(b"NAME", b"x" * size), (b"y" * size or b"Y", b""), (b"A", b"b")]
    assert decode_pairs(encode_pairs(pairs), max_pairs=10) == pairs


@pytest.mark.parametrize(
    "data",
    [
        b"\x05",  # value length missing
        b"\x80\x00\x00",  # four-byte name length cut short
        b"\x01\x80\x00",  # four-byte value length cut short
        b"\x04\x04NAMEval",  # value runs past the end
    ],
)
def test_truncated_pairs_are_remote_errors(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_pairs(data, max_pairs=10)


def test_pair_count_limit() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_pairs(encode_pairs([(b"A", b"")] * 3), max_pairs=2)
    assert caught.value.limit == "max_params_count"


def test_a_length_beyond_31_bits_cannot_be_encoded() -> None:
    # The length encoder itself: a 2 GiB name is not made for this (and the compiled build's
    # len() would not ask a bytes subclass's __len__).
    assert _encode_length(2**31 - 1) == b"\xff\xff\xff\xff"
    with pytest.raises(LocalProtocolError, match="too long"):
        _encode_length(2**31)


# -- records (§3.3) --------------------------------------------------------------------------


def test_record_header_round_trip() -> None:
    record = build_record(RecordType.STDOUT, 513, b"hello")
    header = parse_header(record)
    assert (header.type, header.request_id, header.content_length) == (6, 513, 5)
    assert header.padding_length == 3
    assert header.record_length == len(record) == 16


def test_build_record_refuses_content_over_65535_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        build_record(RecordType.STDOUT, 1, b"x" * 65536)


def test_stream_records_split_big_data_and_send_nothing_for_empty_data() -> None:
    assert build_stream_records(RecordType.STDOUT, 1, b"") == b""
    data = build_stream_records(RecordType.STDOUT, 1, b"x" * 65528)
    assert len(data) == 8 + 65528  # exactly one unpadded record
    split = build_stream_records(RecordType.STDOUT, 1, b"x" * 65529)
    assert parse_header(split).content_length == 65528


# -- ClientConnection ------------------------------------------------------------------------


def test_client_request_bytes_match_the_spec_layout() -> None:
    client = ClientConnection()
    data = client.send(RequestStarted(1, Role.RESPONDER, True, ((b"A", b"b"),)))
    begin_record = b"\x01\x01\x00\x01\x00\x08\x00\x00" + b"\x00\x01\x01\x00\x00\x00\x00\x00"
    params_record = b"\x01\x04\x00\x01\x00\x04\x04\x00" + b"\x01\x01Ab" + bytes(4)
    params_end = b"\x01\x04\x00\x01\x00\x00\x00\x00"
    assert data == begin_record + params_record + params_end
    assert client.active_requests == frozenset({1})


def test_client_input_streams_abort_and_get_values() -> None:
    client = started_client(1)
    assert client.send(InputData(1, b"abc")) == build_record(RecordType.STDIN, 1, b"abc")
    assert client.send(InputEnd(1)) == build_record(RecordType.STDIN, 1)
    assert client.send(InputData(1, b"d", RecordType.DATA)) == build_record(
        RecordType.DATA, 1, b"d"
    )
    assert client.send(AbortRequest(1)) == build_record(RecordType.ABORT_REQUEST, 1)
    assert client.send(GetValues((b"FCGI_MAX_CONNS",))) == build_record(
        RecordType.GET_VALUES, 0, encode_pairs([(b"FCGI_MAX_CONNS", b"")])
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (RequestStarted(0, Role.RESPONDER, False, ()), "1..65535"),
        (RequestStarted(65536, Role.RESPONDER, False, ()), "1..65535"),
        (RequestStarted(1, Role.RESPONDER, False, ()), "already active"),
        (InputData(2, b"x"), "not active"),
        (InputData(1, b"x", RecordType.STDOUT), "cannot send STDOUT"),
        (InputEnd(1, RecordType.STDERR), "cannot send STDERR"),
    ],
)
def test_client_send_misuse(event: object, message: str) -> None:
    client = started_client(1)
    with pytest.raises(LocalProtocolError, match=message):
        client.send(event)  # type: ignore[arg-type]


def test_client_receives_every_response_record_kind() -> None:
    client = started_client(1)
    data = (
        build_record(RecordType.STDOUT, 1, b"out")
        + build_record(RecordType.STDERR, 1, b"err")
        + build_record(RecordType.STDERR, 1)
        + build_record(RecordType.STDOUT, 1)
        + build_record(RecordType.END_REQUEST, 1, struct.pack(">IB3x", 7, 2))
        + build_record(RecordType.GET_VALUES_RESULT, 0, encode_pairs([(b"A", b"1")]))
        + build_record(RecordType.UNKNOWN_TYPE, 0, bytes((42,)) + bytes(7))
    )
    for index in range(len(data)):  # byte by byte
        client.receive_data(data[index : index + 1])
    client.receive_data(b"")
    events = []
    while (event := client.next_event()) != ConnectionClosed():
        assert event is not NEED_DATA
        events.append(event)
    assert events == [
        OutputData(1, b"out"),
        OutputData(1, b"err", RecordType.STDERR),
        OutputEnd(1, RecordType.STDERR),
        OutputEnd(1),
        EndRequest(1, 7, ProtocolStatus.OVERLOADED),
        GetValuesResult(((b"A", b"1"),)),
        UnknownType(42),
    ]
    assert client.active_requests == frozenset()


@pytest.mark.parametrize(
    "data",
    [
        build_record(RecordType.STDIN, 1, b"x"),  # a web-server-direction type
        build_record(77, 1, b"x"),  # an unknown type
        build_record(RecordType.STDOUT, 2, b"x"),  # an id that is not active
        build_record(RecordType.END_REQUEST, 1, b"short"),
        build_record(RecordType.END_REQUEST, 1, struct.pack(">IB3x", 0, 9)),
        build_record(RecordType.UNKNOWN_TYPE, 0),
    ],
    ids=["direction", "unknown-type", "inactive-id", "end-body", "end-status", "unknown-empty"],
)
def test_client_rejects_malformed_responses(data: bytes) -> None:
    client = started_client(1)
    client.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_client_needs_data_until_a_record_is_whole() -> None:
    client = started_client(1)
    client.receive_data(build_record(RecordType.STDOUT, 1, b"abc")[:9])
    assert client.next_event() is NEED_DATA
