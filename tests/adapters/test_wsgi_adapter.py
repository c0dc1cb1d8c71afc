"""The WSGI adapter driven through an in-memory channel: what a web server would receive."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from memory_channels import BASE_PARAMS, MemoryChannel

from fcgigw.adapters.params import WSGI_OWN_KEYS
from fcgigw.adapters.wsgi import run_wsgi
from fcgigw.protocol import Role


def run(app: Any, channel: MemoryChannel | None = None, root_path: str = "") -> MemoryChannel:
    channel = channel or MemoryChannel()
    run_wsgi(app, channel, root_path=root_path)
    return channel


def test_hello_goes_out_in_one_write_with_an_explicit_status() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    channel = run(app)
    assert channel.stdout_writes == []  # everything rides with END_REQUEST
    assert channel.stdout == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert channel.app_status == 0


def test_environ_follows_pep_3333() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    channel = run(app, MemoryChannel(role=Role.RESPONDER))
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.input_terminated"] is True
    assert seen["wsgi.multithread"] is True
    assert seen["wsgi.run_once"] is False
    assert seen["FCGI_ROLE"] == "RESPONDER"
    assert seen["fcgi.params"] == BASE_PARAMS
    assert seen["PATH_INFO"] == "/page"  # nginx's whole path in SCRIPT_NAME, moved over
    assert seen["SCRIPT_NAME"] == ""
    assert all(isinstance(v, str) for k, v in seen.items() if k.isupper())
    assert channel.response()[0] == "204 No Content"


def test_streamed_chunks_are_sent_as_produced_and_headers_wait_for_the_first_bytes() -> None:
    progress: list[int] = []
    channel = MemoryChannel()

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""  # PEP 3333: no headers for an empty chunk
        progress.append(len(channel.stdout_writes))
        yield b"one"
        progress.append(len(channel.stdout_writes))
        yield b"two"

    run(app, channel)
    assert progress == [0, 1]
    assert channel.stdout_writes[0].startswith(b"Status: 200 OK\r\n")
    assert channel.stdout_writes[0].endswith(b"\r\n\r\none")
    assert channel.stdout_writes[1] == b"two"
    assert channel.finished == (0, b"")


def test_write_callable_streams_before_the_iterable() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"legacy ")
        return [b"then", b" iterable"]

    assert run(app).response()[2] == b"legacy then iterable"


def test_app_exception_gives_500_without_traceback_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise ValueError("secret detail")

    with caplog.at_level(logging.ERROR, logger="fcgigw.wsgi"):
        channel = run(app)
    status, headers, body = channel.response()
    assert status == "500 Internal Server Error"
    assert b"secret detail" not in body
    assert int(headers["Content-Length"]) == len(body)
    assert b"ValueError: secret detail" in channel.stderr  # the web server's error log
    assert channel.app_status == 1
    assert "secret detail" in caplog.text


def test_exception_after_headers_cuts_the_response_with_an_error_status() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("midway")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    channel = run(app)
    assert channel.response()[2] == b"partial"
    assert channel.app_status == 1
    assert closed == [True]


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        ("200 OK", [("X-Bad", "a\r\nSet-Cookie: evil=1")], [b"x"]),
        ("200 OK\r\nX-Injected: 1", [], [b"x"]),
        ("OK", [], [b"x"]),
        ("200 OK", [("Bad Name", "v")], [b"x"]),
        ("200 OK", [], ["text, not bytes"]),
        ("200 OK", [("Content-Type", "caf\u00e9 \u20ac")], [b"x"]),
    ],
)
def test_unsafe_or_invalid_responses_become_500(
    status: str, headers: list[tuple[str, str]], body: list[Any]
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[Any]:
        start_response(status, headers)
        return body

    channel = run(app)
    assert channel.response()[0] == "500 Internal Server Error"
    assert b"evil" not in channel.stdout
    assert b"X-Injected" not in channel.stdout


def test_start_response_twice_without_exc_info_is_an_error() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return [b"x"]

    assert run(app).response()[0] == "500 Internal Server Error"


def test_exc_info_before_headers_replaces_the_response() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise KeyError("x")
        except KeyError as error:
            start_response("503 Service Unavailable", [], (KeyError, error, error.__traceback__))
        return [b"sorry"]

    status, headers, body = run(app).response()
    assert (status, body) == ("503 Service Unavailable", b"sorry")
    assert "X-First" not in headers


def test_exc_info_after_headers_reraises_and_ends_with_error_status() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"sent"
        try:
            raise KeyError("late")
        except KeyError as error:
            start_response("500 Oops", [], (KeyError, error, error.__traceback__))
        yield b"never"

    channel = run(app)
    assert channel.response()[:1] == ("200 OK",)
    assert b"never" not in channel.stdout
    assert channel.app_status == 1


def test_returning_without_start_response_is_a_500() -> None:
    assert run(lambda environ, start_response: []).response()[0] == "500 Internal Server Error"


def test_head_response_keeps_headers_and_drops_the_body() -> None:
    params = tuple(p if p[0] != b"REQUEST_METHOD" else (p[0], b"HEAD") for p in BASE_PARAMS)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]

    status, headers, body = run(app, MemoryChannel(params)).response()
    assert (status, headers["Content-Length"], body) == ("200 OK", "5", b"")


def test_body_longer_than_content_length_is_truncated() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        return [b"abc", b"def"]

    assert run(app).response()[2] == b"abc"


def test_body_shorter_than_content_length_ends_with_error_status() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc", b""]

    assert run(app).app_status == 1


def test_wsgi_input_reads_lines_sizes_and_the_rest() -> None:
    chunks = [b"first line\nsec", b"ond line\n", b"tail without newline"]
    results: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        results["line1"] = stream.readline()
        results["five"] = stream.read(5)
        results["line2"] = stream.readline()
        results["limited"] = stream.readline(4)
        results["rest"] = stream.read()
        results["after_end"] = stream.read(10)
        start_response("200 OK", [])
        return [b"ok"]

    run(app, MemoryChannel(body_chunks=chunks))
    assert results == {
        "line1": b"first line\n",
        "five": b"secon",
        "line2": b"d line\n",
        "limited": b"tail",
        "rest": b" without newline",
        "after_end": b"",
    }


def test_wsgi_input_iterates_lines_and_readlines() -> None:
    body = [b"a\nb\n", b"c"]

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"|".join(environ["wsgi.input"])]

    assert run(app, MemoryChannel(body_chunks=body)).response()[2] == b"a\n|b\n|c"

    def app2(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"|".join(environ["wsgi.input"].readlines())]

    assert run(app2, MemoryChannel(body_chunks=body)).response()[2] == b"a\n|b\n|c"


def test_app_can_answer_before_reading_the_body() -> None:
    channel = MemoryChannel(body_chunks=[b"x" * 100])

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("413 Content Too Large", [])
        return [b"too big"]

    run(app, channel)
    assert channel.reads == 0  # the adapter itself does not wait for the body
    assert channel.response()[0] == "413 Content Too Large"


def test_wsgi_errors_go_to_fcgi_stderr() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.errors"].write("warning: caf\u00e9\n")
        environ["wsgi.errors"].writelines(["a\n", "b\n"])
        environ["wsgi.errors"].flush()
        start_response("200 OK", [])
        return [b"ok"]

    assert run(app).stderr == "warning: caf\u00e9\na\nb\n".encode()


def test_file_wrapper_streams_a_file_and_closes_it() -> None:
    data = b"0123456789" * 20000
    handle = io.BytesIO(data)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return environ["wsgi.file_wrapper"](handle, 65536)

    assert run(app).response()[2] == data
    assert handle.closed


def test_disconnect_mid_response_stops_iteration_and_closes() -> None:
    channel = MemoryChannel()
    produced: list[int] = []
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            for number in range(100):
                produced.append(number)
                if number == 2:
                    channel.aborted = True
                yield b"chunk"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    run(app, channel)
    assert produced == [0, 1, 2]
    assert closed == [True]
    assert channel.app_status == 1


def with_method(method: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((n, method if n == b"REQUEST_METHOD" else v) for n, v in BASE_PARAMS)


def test_flask_head_is_a_complete_response_not_a_short_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Werkzeug answers HEAD with GET's Content-Length and no body (RFC 9110 §9.3.2)."""
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    app.add_url_rule("/page", "page", lambda: "hello, world")

    with caplog.at_level(logging.INFO, logger="fcgigw"):
        channel = run(app, MemoryChannel(with_method(b"HEAD")))
    status, headers, body = channel.response()
    assert (status, headers["Content-Length"], body) == ("200 OK", "12", b"")
    assert channel.app_status == 0
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_not_modified_response_keeps_its_content_length_without_a_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RFC 9110 §8.6: a 304 may carry the Content-Length a 200 would have had."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("304 Not Modified", [("ETag", '"v1"'), ("Content-Length", "12")])
        return []

    with caplog.at_level(logging.INFO, logger="fcgigw"):
        channel = run(app)
    assert channel.app_status == 0
    assert channel.response()[1]["Content-Length"] == "12"
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_get_body_short_of_its_content_length_is_still_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The control for the two above: the same app over GET sends too little."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "12")])
        return [b"hello"]

    with caplog.at_level(logging.INFO, logger="fcgigw"):
        channel = run(app)
    assert channel.app_status == 1
    assert "response shorter than its Content-Length (5 of 12 bytes)" in caplog.text


def test_a_start_seen_before_keeps_its_checks_and_its_content_length() -> None:
    """Starts are remembered by their str status and headers: a bad one is refused each time,
    and a good one declares its Content-Length again (a short body is still an error)."""
    sent = {"body": b"0123456789"}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["QUERY_STRING"] == "bad":
            start_response("200 OK", [("X-Bad", "a\r\nX-Injected: evil")])
        else:
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [sent["body"]]

    def query(text: bytes) -> MemoryChannel:
        others = [pair for pair in BASE_PARAMS if pair[0] != b"QUERY_STRING"]
        return MemoryChannel((*others, (b"QUERY_STRING", text)))

    for _ in range(2):
        assert run(app, query(b"bad")).response()[0] == "500 Internal Server Error"
        first = run(app, query(b""))
        assert first.response() == (
            "200 OK",
            {"Content-Type": "text/plain", "Content-Length": "10"},
            b"0123456789",
        )
        assert first.app_status == 0
    sent["body"] = b"short"
    assert run(app, query(b"")).app_status == 1  # the remembered start still declares 10


def test_many_different_starts_each_get_their_own_headers() -> None:
    """More distinct starts than are remembered (a Content-Length per body size)."""
    for size in range(600):
        body = b"x" * size

        def app(environ: dict[str, Any], start_response: Any, body: bytes = body) -> list[bytes]:
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]

        channel = run(app)
        assert channel.response() == ("200 OK", {"Content-Length": str(size)}, body)
        assert channel.app_status == 0


def test_a_param_named_like_a_key_fcgigw_sets_cannot_stand_for_it() -> None:
    """A misconfigured web server sending ``wsgi.version`` or ``FCGI_ROLE`` as params: the
    app still gets fcgigw's own values; another ``wsgi.*`` name is an ordinary param."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [])
        return [b"ok"]

    evil = tuple((key.encode(), b"evil") for key in WSGI_OWN_KEYS)
    run(app, MemoryChannel((*BASE_PARAMS, *evil, (b"wsgi.custom", b"kept"))))
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.run_once"] is False
    assert seen["FCGI_ROLE"] == "RESPONDER"
    assert seen["wsgi.input"].read() == b""
    assert seen["wsgi.custom"] == "kept"
    assert all(value != "evil" for value in seen.values())
    # Every key fcgigw sets itself is one of them (a new one must be added there).
    own = {key for key in seen if key.startswith(("wsgi.", "fcgi.")) or key == "FCGI_ROLE"}
    assert own - {"wsgi.custom"} <= WSGI_OWN_KEYS
