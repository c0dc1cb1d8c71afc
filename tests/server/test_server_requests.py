"""Requests to a running fcgigw through fcgigw.client: what a web server sees on the wire."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from fcgi_wire import CUTS, check_body_read_to_its_length, cut_a_body_short
from servers import RunningProcess, run_fcgigw, short_tempdir

from fcgigw.client import FastCGIClient, build_params
from fcgigw.protocol import (
    AbortRequest,
    ConnectionClosed,
    EndRequest,
    InputData,
    OutputData,
    ProtocolStatus,
    RecordType,
    UnknownType,
    build_record,
)

TIMEOUT = 20


def client(server: RunningProcess) -> FastCGIClient:
    return FastCGIClient(server.address, timeout=TIMEOUT)


def test_hello_has_explicit_status_and_completes(server: RunningProcess) -> None:
    with client(server) as fcgi:
        response = fcgi.request(build_params("GET", "/hello"))
    assert response.stdout.startswith(b"Status: 200 OK\r\n")
    assert (response.status, response.body) == (200, b"Hello, world!")
    assert response.app_status == 0
    assert response.protocol_status == ProtocolStatus.REQUEST_COMPLETE


def test_without_keep_conn_the_server_closes_after_the_response(server: RunningProcess) -> None:
    with client(server) as fcgi:
        fcgi.request(build_params("GET", "/hello"), keep_connection=True)
        fcgi.begin(build_params("GET", "/hello"), keep_connection=False)
        fcgi.send_stream(1, b"", RecordType.STDIN)
        events = []
        while not isinstance(event := fcgi.next_event(), ConnectionClosed):
            events.append(event)
    assert isinstance(events[-1], EndRequest)


def test_keep_conn_serves_many_requests_on_one_connection(server: RunningProcess) -> None:
    with client(server) as fcgi:
        bodies = []
        for number in range(20):
            response = fcgi.request(
                build_params("POST", f"/echo?n={number}", body_length=3),
                b"abc",
                keep_connection=True,
            )
            bodies.append(json.loads(response.body))
        sock = fcgi.sock
        assert sock.fileno() >= 0  # still the one connection
    assert [b["QUERY_STRING"] for b in bodies] == [f"n={n}" for n in range(20)]
    assert {b["body_length"] for b in bodies} == {3}


def test_large_upload_arrives_whole(server: RunningProcess) -> None:
    body = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    with client(server) as fcgi:
        response = fcgi.request(build_params("PUT", "/echo", body_length=len(body)), body)
    seen = json.loads(response.body)
    assert seen["body_length"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_large_response_is_split_into_records_of_at_most_65535_bytes(
    server: RunningProcess,
) -> None:
    with client(server) as fcgi:
        fcgi.begin(build_params("GET", "/stream?count=16&size=65536"))
        fcgi.send_stream(1, b"", RecordType.STDIN)
        sizes, data = [], b""
        for event in fcgi.response_events(1):
            if isinstance(event, OutputData):
                sizes.append(len(event.data))
                data += event.data
    body = data.partition(b"\r\n\r\n")[2]
    assert len(body) == 16 * 65536
    assert max(sizes) <= 65535
    assert body[:65536] == b"A" * 65536


def test_app_error_is_a_500_with_the_traceback_on_stderr(server: RunningProcess) -> None:
    with client(server) as fcgi:
        response = fcgi.request(build_params("GET", "/fail"))
    assert response.status == 500
    assert b"failing on purpose" not in response.body
    assert b"RuntimeError: failing on purpose" in response.stderr
    assert response.app_status == 1
    with client(server) as fcgi:  # the server keeps serving
        assert fcgi.request(build_params("GET", "/hello")).status == 200


def test_error_after_the_headers_cuts_the_response_with_app_status(server: RunningProcess) -> None:
    with client(server) as fcgi:
        response = fcgi.request(build_params("GET", "/fail_midway"))
    assert (response.status, response.body) == (200, b"first part\n")
    assert response.app_status == 1


def test_wsgi_errors_reach_the_web_server_as_stderr(server: RunningProcess) -> None:
    with client(server) as fcgi:
        response = fcgi.request(build_params("GET", "/errors"))
    assert response.stderr == b"a line for the web server's error log\n"
    assert response.body == b"logged"


def test_get_values_reports_the_configured_values(server: RunningProcess) -> None:
    with client(server) as fcgi:
        values = fcgi.get_values([b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS", b"X"])
    assert values == {b"FCGI_MAX_CONNS": b"1000", b"FCGI_MAX_REQS": b"8", b"FCGI_MPXS_CONNS": b"1"}


def test_unknown_management_type_is_answered_and_the_connection_stays_usable(
    server: RunningProcess,
) -> None:
    with client(server) as fcgi:
        fcgi.send_raw(build_record(42, 0, b"whatever"))
        assert fcgi.next_event() == UnknownType(42)
        response = fcgi.request(build_params("GET", "/hello"), keep_connection=True)
    assert response.body == b"Hello, world!"


def test_multiplexed_requests_finish_out_of_order(server: RunningProcess) -> None:
    with client(server) as fcgi:
        fcgi.begin(build_params("GET", "/slow?seconds=1"), keep_connection=True, request_id=1)
        fcgi.send_stream(1, b"", RecordType.STDIN)
        fcgi.begin(build_params("GET", "/hello"), keep_connection=True, request_id=2)
        fcgi.send_stream(2, b"", RecordType.STDIN)
        ended = []
        while len(ended) < 2:
            event = fcgi.next_event()
            if isinstance(event, EndRequest):
                ended.append(event.request_id)
    assert ended == [2, 1]


def test_abort_request_ends_the_request(server: RunningProcess) -> None:
    with client(server) as fcgi:
        fcgi.begin(build_params("POST", "/echo", body_length=100), keep_connection=True)
        fcgi.send_event(InputData(1, b"only part of the body"))
        fcgi.send_event(AbortRequest(1))
        events = list(fcgi.response_events(1))
        assert isinstance(events[-1], EndRequest)
        # the connection is still good for the next request with the same id
        assert fcgi.request(build_params("GET", "/hello"), keep_connection=True).status == 200


@pytest.fixture(scope="module", params=["tcp", "unix"])
def quick_stall_server(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    """The router with --body-stall-timeout-seconds 1: a body that ended short of its
    CONTENT_LENGTH is given up after 1 s of silence instead of 10."""
    address = f"unix:{short_tempdir()}/fcgigw.sock" if request.param == "unix" else None
    args = ("--body-stall-timeout-seconds", "1", "--access-log", "testapps:router")
    with run_fcgigw(*args, address=address) as running:
        yield running


@pytest.mark.parametrize("cut", CUTS)
def test_a_body_cut_short_raises_in_the_app_rather_than_ending(
    quick_stall_server: RunningProcess, cut: str
) -> None:
    """The web server aborts the request, closes the connection, or ends STDIN before the
    body's CONTENT_LENGTH bytes came (its client left mid-upload: §6.2). Reading wsgi.input
    then raises an OSError, as mod_wsgi's does, instead of ending: an app that saves uploads
    would otherwise keep a truncated file as the whole. (It ended, behind Apache, Caddy and
    HAProxy, until fcgigw raised; after an early end it waited for ever.)"""
    server = quick_stall_server
    tag = f"{cut}-{server.address[-6:]}"
    cut_a_body_short(server.address, f"/body_outcome?{tag}", cut=cut, then="/hello")
    server.wait_for_log(f"body {tag}: error ")
    assert f"body {tag}: whole" not in server.log()
    if cut == "early-end":  # given up after the set wait, not the default's 10 s
        server.wait_for_log("nothing more came in 1 s: aborted")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x02\x01\x00\x01\x00\x08\x00\x00" + bytes(8),  # version 2
        build_record(6, 1, b"STDOUT sent to the application"),
        build_record(1, 1, b"short"),  # BEGIN_REQUEST body of 5 bytes
    ],
    ids=["bad-version", "wrong-direction", "bad-begin-body"],
)
def test_malformed_input_closes_that_connection_only(
    server: RunningProcess, garbage: bytes
) -> None:
    with client(server) as bystander, client(server) as fcgi:
        bystander.begin(build_params("GET", "/hello"), keep_connection=True)
        fcgi.send_raw(garbage)
        assert isinstance(fcgi.next_event(), ConnectionClosed)
        bystander.send_stream(1, b"", RecordType.STDIN)
        assert bystander.read_response(1, keep_connection=True).body == b"Hello, world!"


def test_params_over_the_limit_close_the_connection_and_name_the_setting(
    server: RunningProcess,
) -> None:
    huge = build_params("GET", "/hello", headers={"X-Big": "x" * (1024 * 1024)})
    with client(server) as fcgi:
        fcgi.begin(huge)
        assert isinstance(fcgi.next_event(), ConnectionClosed)
    server.wait_for_log("max_params_bytes")


def test_concurrent_connections_are_served(server: RunningProcess) -> None:
    results: list[int] = []

    def one() -> None:
        with client(server) as fcgi:
            results.append(fcgi.request(build_params("GET", "/slow?seconds=0.3")).status)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert results == [200] * 6


def test_idle_keep_alive_connections_do_not_hold_threads(server: RunningProcess) -> None:
    idle = [client(server) for _ in range(12)]  # more than the 8 threads
    try:
        for fcgi in idle:
            assert fcgi.request(build_params("GET", "/hello"), keep_connection=True).status == 200
        with client(server) as fresh:
            assert fresh.request(build_params("GET", "/hello")).status == 200
    finally:
        for fcgi in idle:
            fcgi.close()


def test_peer_closing_mid_request_does_not_hurt_the_server(server: RunningProcess) -> None:
    for _ in range(5):
        with client(server) as fcgi:
            fcgi.begin(build_params("POST", "/echo", body_length=1000))
            fcgi.send_event(InputData(1, b"x" * 10))
            fcgi.sock.shutdown(socket.SHUT_RDWR)
    with client(server) as fcgi:
        assert fcgi.request(build_params("GET", "/hello")).status == 200


def test_the_app_reads_the_body_as_it_arrives_and_answers_before_it_ends(
    server: RunningProcess,
) -> None:
    with client(server) as fcgi:
        fcgi.begin(build_params("POST", "/lines"))
        fcgi.send_event(InputData(1, b"first line\n"))
        seen = b""
        while b"FIRST LINE" not in seen:  # the rest of the body has not been sent yet
            event = fcgi.next_event()
            assert isinstance(event, OutputData)
            seen += event.data
        fcgi.send_event(InputData(1, b"second line\n"))
        fcgi.send_stream(1, b"", RecordType.STDIN)
        rest = fcgi.read_response(1)
    assert rest.stdout == b"SECOND LINE\n"


def test_a_body_is_read_to_its_content_length(server: RunningProcess) -> None:
    """mod_fcgid sends an empty STDIN record wherever an HTTP/2 client's upload paused, and
    HAProxy 2.6 now and then none after the body: the app reads CONTENT_LENGTH bytes and
    answers; END_REQUEST waits for the stream's empty record (the server may be writing it)."""
    check_body_read_to_its_length(server.address, "/echo")
