"""ASGI apps under fcgigw in a subprocess, driven by fcgigw.client over the real wire."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from fcgi_wire import CUTS, check_body_read_to_its_length, cut_a_body_short
from servers import (
    RunningProcess,
    free_port,
    run_fcgigw,
    run_to_exit,
)

from fcgigw.client import FastCGIClient, build_params
from fcgigw.protocol import AbortRequest, EndRequest, InputData, OutputData, RecordType

TIMEOUT = 20


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def asgi(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    """The ASGI test apps with lifespan, on each event loop; a body that ends short is given
    up after 1 s of silence (instead of 10)."""
    with run_fcgigw(
        "--loop",
        request.param,
        "--body-stall-timeout-seconds",
        "1",
        "--access-log",
        "--root-path",
        "/app",
        "--request-body-memory-bytes",
        "65536",
        "asgiapps:with_lifespan",
    ) as running:
        yield running


def request(server: RunningProcess, path: str, body: bytes = b"", **kwargs: Any) -> Any:
    with FastCGIClient(server.address, timeout=TIMEOUT) as client:
        return client.request(build_params(kwargs.pop("method", "GET"), path, **kwargs), body)


def test_scope_follows_the_asgi_http_spec(asgi: RunningProcess) -> None:
    response = request(
        asgi,
        "/app/echo/caf%C3%A9?q=%20x",
        b"abc",
        method="POST",
        content_type="text/plain",
        body_length=3,
        headers=[("X-Dup", "a"), ("X-Dup", "b"), ("Transfer-Encoding", "chunked")],
        https=True,
        extra=[("SERVER_PROTOCOL", "HTTP/2.0")],
    )
    scope = json.loads(response.body)
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["method"], scope["scheme"], scope["http_version"]) == ("POST", "https", "2")
    assert scope["root_path"] == "/app"
    assert scope["path"] == "/app/echo/caf\u00e9"  # decoded, including the root path
    assert scope["raw_path"] == "/app/echo/caf%C3%A9"
    assert scope["query_string"] == "q=%20x"
    headers = scope["headers"]
    assert ["x-dup", "a"] in headers
    assert ["x-dup", "b"] in headers  # repeated params stay separate entries
    assert ["content-type", "text/plain"] in headers
    assert ["content-length", "3"] in headers
    assert not any(name == "transfer-encoding" for name, _ in headers)  # length is known
    assert scope["client"] == ["127.0.0.1", 40000]
    assert scope["server"] == ["127.0.0.1", 80]
    assert scope["role"] == "RESPONDER"
    assert scope["state"] == {"db": "connected"}  # from lifespan startup


def test_lifespan_startup_runs_before_serving(asgi: RunningProcess) -> None:
    log = asgi.log()
    assert log.index("lifespan startup") < log.index("serving ASGI on")


def test_upload_larger_than_the_memory_threshold_to_a_slow_reader(asgi: RunningProcess) -> None:
    body = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB against a 64 KiB threshold
    response = request(asgi, "/app/slow_reader", body, method="PUT", body_length=len(body))
    assert response.body == f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


def test_streamed_chunks_reach_the_client_before_the_app_finishes(asgi: RunningProcess) -> None:
    with FastCGIClient(asgi.address, timeout=TIMEOUT) as client:
        client.begin(build_params("GET", "/app/stream"))
        client.send_stream(1, b"", RecordType.STDIN)
        first = client.next_event()
        later = list(client.response_events(1))
    assert isinstance(first, OutputData)
    assert first.data.endswith(b"chunk 0\n")
    assert b"end" not in first.data
    assert isinstance(later[-1], EndRequest)
    assert b"".join(e.data for e in later if isinstance(e, OutputData)).endswith(b"end\n")


def test_large_responses_wait_for_the_socket(asgi: RunningProcess) -> None:
    response = request(asgi, "/app/big")
    assert len(response.body) == 64 * 65536


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/app/fail_before_start", 500, None),
        ("/app/silent", 500, None),
        ("/app/out_of_order", 500, None),
        ("/app/bad_header", 500, None),
        ("/app/fail_after_start", 200, b"partial"),
        ("/app/unfinished", 200, b"started"),
    ],
)
def test_app_errors_end_the_request_with_an_error_status(
    asgi: RunningProcess, path: str, status: int, body: bytes | None
) -> None:
    response = request(asgi, path)
    assert response.status == status
    assert response.app_status == 1
    if body is not None:
        assert response.body == body
    else:
        assert b"purpose" not in response.body
    assert request(asgi, "/app/hello").body == b"Hello, world!"  # still serving


def test_traceback_goes_to_fcgi_stderr(asgi: RunningProcess) -> None:
    response = request(asgi, "/app/fail_before_start")
    assert b"RuntimeError: asgi failing on purpose" in response.stderr


def test_disconnect_after_abort_request(asgi: RunningProcess) -> None:
    with FastCGIClient(asgi.address, timeout=TIMEOUT) as client:
        client.begin(build_params("GET", "/app/wait_disconnect"), keep_connection=True)
        client.send_stream(1, b"", RecordType.STDIN)
        asgi.wait_for_log("waiting for disconnect")
        client.send_event(AbortRequest(1))
        events = list(client.response_events(1))
    assert isinstance(events[-1], EndRequest)
    asgi.wait_for_log("received http.disconnect")


@pytest.mark.parametrize("cut", CUTS)
def test_a_body_cut_short_is_a_disconnect_not_its_end(asgi: RunningProcess, cut: str) -> None:
    """As for WSGI (test_server_requests): the app gets what came, then http.disconnect,
    never ``more_body: False`` for a body that did not all come."""
    tag = f"{cut}-{asgi.address[-6:]}"
    cut_a_body_short(asgi.address, f"/app/body_outcome?{tag}", cut=cut, then="/app/hello")
    asgi.wait_for_log(f"body {tag}: disconnected ")
    assert f"body {tag}: whole" not in asgi.log()


def test_disconnect_when_the_connection_closes(asgi: RunningProcess) -> None:
    before = asgi.log().count("received http.disconnect")
    client = FastCGIClient(asgi.address, timeout=TIMEOUT)
    client.begin(build_params("GET", "/app/wait_disconnect"))
    client.send_stream(1, b"", RecordType.STDIN)
    asgi.wait_for_log("waiting for disconnect", before + 1)
    client.close()
    asgi.wait_for_log("received http.disconnect", before + 1)


def test_a_client_gone_mid_response_is_an_info_line_not_an_error(asgi: RunningProcess) -> None:
    """The app saw http.disconnect and returned with its response unfinished: the client
    left, which is no application error (as for WSGI)."""
    log = asgi.log()
    gone_line = "INFO fcgigw.asgi: request 1: the web server went away mid-response"
    gone = log.count(gone_line)
    unfinished = log.count("the application did not finish its response")
    client = FastCGIClient(asgi.address, timeout=TIMEOUT)
    client.begin(build_params("GET", "/app/stream_until_disconnect"))
    client.send_stream(1, b"", RecordType.STDIN)
    asgi.wait_for_log("streaming until disconnect", log.count("streaming until disconnect") + 1)
    client.close()
    asgi.wait_for_log("stream got http.disconnect", log.count("stream got http.disconnect") + 1)
    asgi.wait_for_log(gone_line, gone + 1)
    assert asgi.log().count("the application did not finish its response") == unfinished


def test_connections_closed_early_or_malformed_leave_the_server_serving(
    asgi: RunningProcess,
) -> None:
    host, _, port = asgi.address.rpartition(":")
    for garbage in (b"", b"\x01\x01\x00", b"\x09" * 16):  # nothing, half a header, bad version
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""  # the server closes its end too
    assert request(asgi, "/app/hello").body == b"Hello, world!"


def test_pathsend_sends_the_file(asgi: RunningProcess, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    assert request(asgi, f"/app/pathsend?path={path}").body == data


def test_multiplexed_asgi_requests_run_concurrently(asgi: RunningProcess) -> None:
    with FastCGIClient(asgi.address, timeout=TIMEOUT) as client:
        client.begin(build_params("GET", "/app/stream"), keep_connection=True, request_id=1)
        client.send_stream(1, b"", RecordType.STDIN)
        client.begin(build_params("GET", "/app/hello"), keep_connection=True, request_id=2)
        client.send_stream(2, b"", RecordType.STDIN)
        ended = []
        while len(ended) < 2:
            event = client.next_event()
            if isinstance(event, EndRequest):
                ended.append(event.request_id)
    assert ended == [2, 1]


def test_keep_conn_and_an_early_response_before_the_body(asgi: RunningProcess) -> None:
    with FastCGIClient(asgi.address, timeout=TIMEOUT) as client:
        client.begin(build_params("POST", "/app/hello", body_length=10), keep_connection=True)
        client.send_event(InputData(1, b"12345"))
        first = client.next_event()  # the app answered without reading the body
        assert isinstance(first, OutputData)
        client.send_event(InputData(1, b"67890"))
        client.send_stream(1, b"", RecordType.STDIN)
        events = list(client.response_events(1))
        assert isinstance(events[-1], EndRequest)  # only after STDIN ended (h2o rule)
        again = client.request(build_params("GET", "/app/hello"), keep_connection=True)
    assert again.body == b"Hello, world!"


def test_lifespan_shutdown_runs_on_sigterm() -> None:
    with run_fcgigw("asgiapps:with_lifespan") as server:
        server.wait_for_log("fcgigw serving ASGI")  # the socket listens before the startup
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(TIMEOUT) == 0
        assert "lifespan shutdown" in server.log()


def test_sigterm_before_the_server_is_up_exits_cleanly() -> None:
    with run_fcgigw("asgiapps:with_lifespan") as server:
        server.process.send_signal(signal.SIGTERM)  # as soon as the socket accepts
        assert server.process.wait(TIMEOUT) == 0


def test_an_app_without_lifespan_is_served_in_auto_mode() -> None:
    with run_fcgigw("asgiapps:router") as server:
        assert request(server, "/hello").body == b"Hello, world!"
        assert json.loads(request(server, "/echo").body)["state"] is None


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops_serve(loop: str) -> None:
    with run_fcgigw("--loop", loop, "asgiapps:with_lifespan") as server:
        server.wait_for_log(f"({loop} event loop)")
        assert request(server, "/hello").body == b"Hello, world!"
        assert len(request(server, "/big").body) == 64 * 65536  # backpressure path
        with FastCGIClient(server.address, timeout=TIMEOUT) as client:  # kept connection
            for _ in range(3):
                response = client.request(build_params("GET", "/hello"), keep_connection=True)
                assert response.body == b"Hello, world!"


def test_lifespan_off_skips_startup() -> None:
    with run_fcgigw("--lifespan", "off", "asgiapps:with_lifespan") as server:
        assert json.loads(request(server, "/echo").body)["state"] is None
        assert "lifespan startup" not in server.log()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lifespan", "on", "asgiapps:router"], "application does not support lifespan"),
        (["asgiapps:failing_startup"], "application startup failed: no database"),
    ],
)
def test_lifespan_failures_exit_with_a_clear_message(args: list[str], message: str) -> None:
    result = run_to_exit("--bind", f"127.0.0.1:{free_port()}", *args)
    assert result.returncode == 5
    assert f"fcgigw: {message}" in result.stderr


def test_asgi2_double_callable() -> None:
    with run_fcgigw("asgiapps:Asgi2App") as server:
        assert request(server, "/two").body == b"asgi2 /two"


def test_get_values_reports_what_the_event_loop_can_run_not_the_thread_count() -> None:
    """Issue 16: FCGI_MAX_REQS was --threads for ASGI too, so clients that honour it (the npm
    fastcgi-client) refused concurrency fcgigw has. One event loop runs every connection's
    requests: max_connections x max_concurrent_requests_per_connection."""
    args = ("--threads", "2", "--max-connections", "10")
    with run_fcgigw(*args, "--max-concurrent-requests-per-connection", "5", "asgiapps:hello") as s:
        with FastCGIClient(s.address, timeout=10) as client:
            values = client.get_values([b"FCGI_MAX_REQS", b"FCGI_MAX_CONNS"])
    assert values == {b"FCGI_MAX_REQS": b"50", b"FCGI_MAX_CONNS": b"10"}


def test_uvloop_tcp_transports_come_with_nodelay() -> None:
    """FastCGIProtocol sets TCP_NODELAY itself on asyncio only, relying on uvloop to set it on
    every TCP transport (without it, Nagle holds END_REQUEST back ~40 ms on a kept
    connection). If a uvloop release stops doing that, this fails."""
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen == [1]


def test_a_body_is_read_to_its_content_length(asgi: RunningProcess) -> None:
    """As for WSGI (test_server_requests.py): empty STDIN records amid the body, none after
    it until the response has come."""
    check_body_read_to_its_length(asgi.address, "/app/echo")
