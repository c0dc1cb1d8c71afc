"""WSGI apps the server and integration tests run in a subprocess (``testapps:NAME``)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The CGI part of the environ and the body's length and digest, as JSON."""
    body = environ["wsgi.input"].read()
    data = {
        key: value
        for key, value in environ.items()
        if isinstance(value, str) and not key.startswith("wsgi.")
    }
    data["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    data["wsgi.run_once"] = environ["wsgi.run_once"]
    data["body_length"] = len(body)
    data["body_sha256"] = hashlib.sha256(body).hexdigest()
    data["pid"] = os.getpid()
    data["thread"] = threading.get_ident()
    payload = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [payload]


#: How read_whole_body's reading ended: the body's end, or an OSError (a body cut short).
WHOLE, ERROR = b"whole", b"error"
READ_BYTES = 65536


def read_whole_body(environ: dict[str, Any]) -> tuple[bytes, int]:
    """Read wsgi.input to its end, as an app saving an upload does: (WHOLE or ERROR, bytes
    read). fcgigw raises an OSError when the web server goes away before the body's end."""
    received = 0
    try:
        while chunk := environ["wsgi.input"].read(READ_BYTES):
            received += len(chunk)
    except OSError:
        return ERROR, received
    return WHOLE, received


def body_outcome(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Reads the body and says how that ended in the server's log (stderr) and in its answer:
    ``body: whole N`` or ``body: error N``, tagged with the query string."""
    outcome, received = read_whole_body(environ)
    line = b"body %s: %s %d" % (environ["QUERY_STRING"].encode(), outcome, received)
    print(line.decode(), file=sys.stderr, flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [line]


def stream(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """Chunks written as produced; the count and size come from the query string."""
    query = dict(part.split("=", 1) for part in environ["QUERY_STRING"].split("&") if "=" in part)
    count, size = int(query.get("count", "5")), int(query.get("size", "10"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for number in range(count):
        yield bytes([65 + number % 26]) * size


def fail(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("failing on purpose")


def fail_midway(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first part\n"
    raise RuntimeError("failing after the headers")


def slow(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Sleeps for ?seconds=S (default 0.5) before answering: shows concurrency."""
    seconds = float(environ["QUERY_STRING"].partition("=")[2] or 0.5)
    print(f"slow request started ({seconds} s)", file=sys.stderr, flush=True)
    time.sleep(seconds)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"slept {seconds}".encode()]


def errors(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    environ["wsgi.errors"].write("a line for the web server's error log\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"logged"]


def router(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """One app with every behaviour above, chosen by the first path segment."""
    name = environ.get("PATH_INFO", "/").strip("/").split("/", 1)[0] or "hello"
    handler = ROUTES.get(name)
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such test app\n"]
    return handler(environ, start_response)


ROUTES: dict[str, Callable[[dict[str, Any], StartResponse], Iterable[bytes]]] = {
    "hello": hello,
    "echo": echo,
    "stream": stream,
    "fail": fail,
    "fail_midway": fail_midway,
    "slow": slow,
    "errors": errors,
    "body_outcome": body_outcome,
}


def lines(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """Echo each request line upper-cased as soon as it arrives: streaming in both ways."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    for line in environ["wsgi.input"]:
        yield line.upper()


ROUTES["lines"] = lines


def filter_upper(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """Filter role (§6.4): STDIN first, then the file upper-cased chunk by chunk as it
    arrives, then what was received against FCGI_DATA_LENGTH."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"stdin %d\n" % len(body)
    received = 0
    while chunk := environ["fcgi.data"].read1(65536):
        received += len(chunk)
        yield chunk.upper()
    expected = environ.get("FCGI_DATA_LENGTH", "")
    state = "complete" if str(received) == expected else "data missing"
    modified = environ.get("FCGI_DATA_LAST_MOD")
    yield f"\n{received} of {expected} bytes, last modified {modified}: {state}".encode()


ROUTES["filter_upper"] = filter_upper


def data_outcome(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """body_outcome for a Filter's file (fcgi.data): ``data QUERY: whole N`` or ``error N``."""
    environ["wsgi.input"].read()
    outcome, received = read_whole_body({"wsgi.input": environ["fcgi.data"]})
    line = b"data %s: %s %d" % (environ["QUERY_STRING"].encode(), outcome, received)
    print(line.decode(), file=sys.stderr, flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [line]


ROUTES["data_outcome"] = data_outcome
