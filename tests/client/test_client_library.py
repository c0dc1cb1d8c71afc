"""The client library, its CLI and the WebTest proxy, against a real fcgigw."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import webtest
from servers import REPO, RunningProcess, child_environment, free_port

from fcgigw.address import format_address, parse_address
from fcgigw.client import FastCGIClient, build_params, parse_cgi_response
from fcgigw.client.wsgi_proxy import FastCGIProxy
from fcgigw.protocol import RecordType, Role

TIMEOUT = 20


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fcgigw.client", *args],
        capture_output=True,
        timeout=TIMEOUT,
        env=child_environment(),
        cwd=REPO,
        check=False,
    )


# -- addresses and CGI parsing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["127.0.0.1:9000", "[::1]:9000", "unix:/run/app.sock", "localhost:80"]
)
def test_addresses_round_trip(text: str) -> None:
    assert format_address(parse_address(text)) == text


@pytest.mark.parametrize(
    "text", ["9000", "host:port", "[::1]9000", "unix:", "fd://3", "1.2.3.4:70000", "a:b:c"]
)
def test_bad_addresses_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_address(text)


def test_fd_addresses_only_for_listening() -> None:
    assert parse_address("fd://3", allow_fd=True).fd == 3
    with pytest.raises(ValueError):
        parse_address("fd://x", allow_fd=True)
    # so only a listening address's error offers the form
    with pytest.raises(ValueError, match=r"or unix:PATH, got 'localhost'$"):
        parse_address("localhost")
    with pytest.raises(ValueError, match=r"unix:PATH or fd://N, got 'localhost'$"):
        parse_address("localhost", allow_fd=True)


def test_cgi_response_parsing() -> None:
    assert parse_cgi_response(b"Status: 404 Not Found\r\nX-A: 1\r\n\r\nbody") == (
        404,
        "Not Found",
        [("X-A", "1")],
        b"body",
    )
    # no Status means 200; bare LF line ends are accepted like every server does
    assert parse_cgi_response(b"Content-Type: text/plain\n\nhi") == (
        200,
        "OK",
        [("Content-Type", "text/plain")],
        b"hi",
    )
    status, reason, headers, _ = parse_cgi_response(
        b"Status: 302\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    )
    assert (status, reason) == (302, "Found")
    assert headers == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def test_build_params_look_like_stock_nginx() -> None:
    params = dict(build_params("POST", "/a%20b/c?x=1", headers={"X-Y": "z"}, body_length=3))
    assert params[b"SCRIPT_NAME"] == b"/a b/c"
    assert b"PATH_INFO" not in params
    assert params[b"REQUEST_URI"] == b"/a%20b/c?x=1"
    assert params[b"QUERY_STRING"] == b"x=1"
    assert params[b"CONTENT_LENGTH"] == b"3"
    assert params[b"HTTP_X_Y"] == b"z"


# -- against a running server ----------------------------------------------------------------


def test_stream_request_body_from_an_iterable_and_read_incrementally(
    router: RunningProcess,
) -> None:
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        response = client.request(build_params("PUT", "/echo"), iter([b"abc", b"", b"def"]))
        assert json.loads(response.body)["body_length"] == 6
        client.begin(build_params("GET", "/stream?count=3&size=4"))
        client.send_stream(1, b"", RecordType.STDIN)
        streamed = b"".join(client.stream_response(1))
    assert streamed.endswith(b"AAAABBBBCCCC")


def test_filter_role_sends_the_data_stream(router: RunningProcess) -> None:
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        response = client.request(build_params("GET", "/hello"), role=Role.FILTER, data=b"file")
    assert response.status == 200


def test_cli_prints_the_body_and_exits_0(router: RunningProcess) -> None:
    result = run_cli(router.address, "/hello")
    assert (result.returncode, result.stdout) == (0, b"Hello, world!")


def test_cli_include_headers_post_data_and_custom_headers(router: RunningProcess) -> None:
    result = run_cli(router.address, "/echo?q=1", "-i", "-d", "a=b", "-H", "X-Test: yes")
    head, _, body = result.stdout.partition(b"\n\n")
    assert head.startswith(b"Status: 200 OK\n")
    seen = json.loads(body)
    assert (seen["REQUEST_METHOD"], seen["HTTP_X_TEST"], seen["body_length"]) == ("POST", "yes", 3)
    assert seen["CONTENT_TYPE"] == "application/x-www-form-urlencoded"


def test_cli_exit_codes_for_errors(router: RunningProcess) -> None:
    failed = run_cli(router.address, "/fail")
    assert failed.returncode == 1
    assert b"RuntimeError" in failed.stderr  # FCGI_STDERR goes to stderr
    assert run_cli(router.address, "/missing").returncode == 1
    assert run_cli(f"127.0.0.1:{free_port()}", "/").returncode == 3
    assert run_cli("not-an-address").returncode == 3
    assert run_cli(router.address, "/", "-H", "no colon").returncode == 2


def test_cli_get_values(router: RunningProcess) -> None:
    result = run_cli(router.address, "--get-values")
    assert result.returncode == 0
    assert b"FCGI_MPXS_CONNS=1" in result.stdout


def test_webtest_drives_flask_over_the_real_wire(flask_server: RunningProcess) -> None:
    app = webtest.TestApp(FastCGIProxy(flask_server.address, timeout=TIMEOUT))
    app.get("/").mustcontain("Hello from Flask over FastCGI")
    seen = app.post("/echo?x=%C3%A9", {"name": "value"}).json
    assert seen["form"] == {"name": ["value"]}
    assert seen["args"] == {"x": ["\u00e9"]}
    assert app.get("/go").status_int == 302
    assert app.get("/fail", expect_errors=True).status_int == 500
