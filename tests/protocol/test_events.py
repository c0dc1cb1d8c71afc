"""The events compare, hash and print by their fields, as the frozen dataclasses they replaced
did: tests and applications compare what next_event() returns with what they expect."""

from __future__ import annotations

from fcgigw.protocol import (
    AbortRequest,
    ConnectionClosed,
    InputData,
    InputEnd,
    OutputData,
    RecordType,
    RequestStarted,
    Role,
)


def test_events_are_equal_by_type_and_fields() -> None:
    assert InputData(1, b"x") == InputData(1, b"x", RecordType.STDIN)
    assert InputData(1, b"x") != InputData(2, b"x")
    assert InputData(1, b"x") != OutputData(1, b"x")  # same fields, another kind of event
    assert InputEnd(1) != (1, RecordType.STDIN)
    assert ConnectionClosed() == ConnectionClosed()


def test_equal_events_hash_alike() -> None:
    started = RequestStarted(1, Role.RESPONDER, True, ((b"A", b"1"),))
    again = RequestStarted(1, Role.RESPONDER, True, ((b"A", b"1"),))
    assert {started, again, AbortRequest(1)} == {again, AbortRequest(1)}


def test_events_print_their_fields() -> None:
    assert repr(AbortRequest(3)) == "AbortRequest(request_id=3)"
    stdin = RecordType.STDIN
    assert repr(InputEnd(2)) == f"InputEnd(request_id=2, stream={stdin!r}, at_length=False)"
