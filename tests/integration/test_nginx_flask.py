"""A real Flask app behind real nginx (stock Debian fastcgi_params) over TCP and Unix sockets."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest
from matrix_clients import CUT_UPLOAD_SENT, leave_mid_upload
from servers import RunningProcess, nginx_binary, run_fcgigw, run_nginx, short_tempdir

pytestmark = pytest.mark.integration

Servers = tuple[RunningProcess, RunningProcess]


def http_request(
    nginx: RunningProcess,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    host, _, port = nginx.address.rpartition(":")
    conn = connection or http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for name, value in items:
            conn.putheader(name, value)
        if body is not None and not any(n.lower() == "transfer-encoding" for n, _ in items):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        if connection is None:
            conn.close()


def echo(nginx: RunningProcess, path: str = "/echo", **kwargs: Any) -> dict[str, Any]:
    status, _, body = http_request(nginx, kwargs.pop("method", "GET"), path, **kwargs)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def test_index_page(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    status, headers, body = http_request(nginx, "GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"Hello from Flask over FastCGI" in body


def test_path_and_percent_encoded_utf8_query(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    seen = echo(nginx, "/echo?x=1&y=a%20b&z=%2F&u=%C3%A9")
    # stock nginx sends the whole path in SCRIPT_NAME and no PATH_INFO: fcgigw moves it.
    assert seen["path"] == "/echo"
    assert seen["script_root"] == ""
    assert seen["args"] == {"x": ["1"], "y": ["a b"], "z": ["/"], "u": ["\u00e9"]}
    assert seen["scheme"] == "http"


def test_repeated_headers_and_cookies_are_joined(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    seen = echo(
        nginx,
        headers=[("X-Dup", "a"), ("X-Dup", "b"), ("Cookie", "a=1"), ("Cookie", "b=2")],
    )
    assert seen["headers"]["X-Dup"] == "a, b"
    assert seen["cookies"] == {"a": "1", "b": "2"}


def test_form_post(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    seen = echo(
        nginx,
        method="POST",
        body=b"name=caf%C3%A9&n=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert seen["form"] == {"name": ["caf\u00e9"], "n": ["2"]}


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 5 * 1024 * 1024])
def test_request_bodies_of_every_size_arrive_whole(nginx_flask: Servers, size: int) -> None:
    nginx, _ = nginx_flask
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    seen = echo(nginx, method="PUT", body=body)
    assert seen["body_length"] == size


def test_chunked_upload_is_dechunked_once(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    payload = b"0123456789abcdef" * 6250  # 100000 bytes, sent chunked by the client
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 8192]), payload[i : i + 8192])
        for i in range(0, len(payload), 8192)
    )
    seen = echo(
        nginx, method="POST", body=chunks + b"0\r\n\r\n", headers=[("Transfer-Encoding", "chunked")]
    )
    assert seen["body_length"] == len(payload)


def test_redirect_has_explicit_status(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    status, headers, _ = http_request(nginx, "GET", "/go")
    assert status == 302
    assert headers["Location"] in ("/", "http://localhost/", "http://127.0.0.1/")


def test_head_has_headers_and_no_body(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    status, headers, body = http_request(nginx, "HEAD", "/")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) > 0


def test_streamed_response(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    status, _, body = http_request(nginx, "GET", "/stream")
    assert status == 200
    assert body == b"".join(f"chunk {n}\n".encode() for n in range(5))


def test_app_error_is_a_500_with_traceback_in_logs_only(nginx_flask: Servers) -> None:
    nginx, fcgigw = nginx_flask
    status, _, body = http_request(nginx, "GET", "/fail")
    assert status == 500
    assert b"on purpose" not in body
    # Flask logs the traceback to wsgi.errors: it travels as FCGI_STDERR to nginx's error log.
    assert "FastCGI sent in stderr" in nginx.log()
    assert "this page fails on purpose" in nginx.log()
    fcgigw.wait_for_log('"GET /fail" 500')
    # the server keeps serving after the failure
    assert http_request(nginx, "GET", "/")[0] == 200


def test_one_hundred_sequential_requests_on_one_client_connection(nginx_flask: Servers) -> None:
    nginx, _ = nginx_flask
    host, _, port = nginx.address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        statuses = [
            http_request(nginx, "GET", f"/echo?n={n}", connection=connection)[0] for n in range(100)
        ]
    finally:
        connection.close()
    assert statuses == [200] * 100


def test_sub_path_mount_with_root_path() -> None:
    """nginx `location /app/` with stock params: the whole path arrives in SCRIPT_NAME;
    --root-path /app gives Flask the right script_root, so its URLs keep the prefix."""
    from servers import nginx_binary, run_fcgigw, run_nginx

    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    with (
        run_fcgigw("--root-path", "/app", "examples.flask_app:app") as fcgigw,
        run_nginx(fcgigw.address, location="/app/") as nginx,
    ):
        seen = echo(nginx, "/app/echo?x=1")
        status, headers, _ = http_request(nginx, "GET", "/app/go")
    assert (seen["script_root"], seen["path"]) == ("/app", "/echo")
    assert (status, headers["Location"]) == (302, "/app/")


def test_an_unbuffered_upload_cut_short_is_not_saved_as_whole() -> None:
    """With ``fastcgi_request_buffering off`` nginx passes an upload on as it comes (the app
    starts on it at once, and nginx keeps no temporary file), and when its client leaves
    mid-upload, it closes the FastCGI connection. A Flask app that saves
    ``request.get_data()`` then gets fcgigw's ClientDisconnected (an OSError) and saves
    nothing; until fcgigw raised, it saved the 300 KB that came as the whole upload. Flask's
    traceback (written to wsgi.errors, which nginx no longer reads) is in fcgigw's log. The
    next upload is saved whole."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    uploads = Path(short_tempdir())
    with (
        run_fcgigw("--access-log", "flaskapps:app") as fcgigw,
        run_nginx(fcgigw.address, extra="fastcgi_request_buffering off;") as nginx,
    ):
        leave_mid_upload(nginx.address, f"/upload/cut?dir={uploads}")
        fcgigw.wait_for_log('"POST /upload/cut')  # the access log: the request has ended
        fcgigw.wait_for_log("ERROR in app: Exception on /upload/cut [POST]")
        assert "fcgigw.stderr: request 1 (over for the web server) wrote" in fcgigw.log()
        assert "fcgigw.adapters.channel.ClientDisconnected" in fcgigw.log()
        body = b"w" * CUT_UPLOAD_SENT
        status, _, answer = http_request(nginx, "POST", f"/upload/whole?dir={uploads}", body=body)
        assert (status, json.loads(answer)) == (200, {"saved": CUT_UPLOAD_SENT})
    assert sorted(path.name for path in uploads.iterdir()) == ["whole"]
