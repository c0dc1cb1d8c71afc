"""The WSGI and ASGI apps of the web server matrix (tests/integration/test_matrix.py):
``matrixapps:wsgi_app`` and ``matrixapps:asgi_app``. Both answer the same routes, chosen by
the first segment of the path below the mount point:

- ``/echo/...``, and the mount point itself (``GET /app``: an empty path): what the app was
  given, as JSON (testapps.echo, asgiapps.echo);
- ``/stream?release=FILE``: ``first``, then, once FILE exists, ``released`` (or ``timed out``
  after ten seconds), so a test sees whether the first chunk reaches it before the app ends.
  It sends ``X-Accel-Buffering: no``, as streaming apps do for nginx (sse-starlette does);
- ``/endless?mark=FILE&seconds=S``: a line of ``x`` every 10 ms for S seconds (twenty if
  not given); when it ends it writes FILE: ``stopped`` if the server stopped it (the client
  hung up), else ``finished``. Also sent with ``X-Accel-Buffering: no``;
- ``/disconnect?mark=FILE&seconds=S`` (ASGI only): sends nothing and waits for
  ``http.disconnect`` for S seconds (twenty if not given), then writes FILE:
  ``disconnected``, or ``timed out``;
- ``/upload?mark=FILE``: reads the request body to its end and writes FILE: ``whole N``
  (the body ended: N bytes), ``error N`` (reading it raised, as WSGI's ``wsgi.input``
  does when the web server went away before the end) or ``disconnected N`` (ASGI's
  ``http.disconnect`` came instead of the rest); then answers what it wrote;
- ``/headers?size=N&count=C``: a response with C headers ``X-Big-0``... of N bytes each;
- ``/redirect``: an explicit ``302`` with a Location built from the mount point, and a body;
- ``/early?size=N``: ``413`` without reading the request body (web-servers.md §2): TOO_LARGE
  (for WSGI a list of one item, as simple apps return), or N bytes of ``x`` in 64 KiB parts;
- ``/method``: the request method in an ``X-Request-Method`` header, for HEAD;
- ``/diagnostics`` (WSGI only): fcgigw's diagnostics page, which names the server;
- anything else: testapps.router / asgiapps.router.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import asgiapps
import testapps
from asgiapps import Receive, Send
from testapps import StartResponse

from fcgigw import diagnostics

RELEASE_TIMEOUT_SECONDS = 10.0
RELEASE_POLL_SECONDS = 0.005
FIRST, RELEASED, TIMED_OUT = b"first\n", b"released\n", b"timed out\n"
REDIRECTED = b"moved to the echo page\n"
TOO_LARGE = b"request body not wanted\n"
METHOD_BODY = b"method body\n"
EARLY_PART_BYTES = 65536
ENDLESS_LINE = b"x" * 1023 + b"\n"
ENDLESS_PAUSE_SECONDS = 0.01
ENDLESS_SECONDS = 20.0
STOPPED, FINISHED = b"stopped", b"finished"
DISCONNECTED = asgiapps.DISCONNECTED
STREAMING_HEADERS = [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")]


def _query_value(query: str, wanted: str) -> str:
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == wanted:
            return value
    return ""


def _released(path: str) -> bool:
    """Waits (bounded) for the test to create ``path``: the app's side of the handshake."""
    deadline = time.monotonic() + RELEASE_TIMEOUT_SECONDS
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(RELEASE_POLL_SECONDS)
    return True


def _route(path_info: str) -> str:
    return path_info.strip("/").split("/", 1)[0] if path_info else "echo"


# -- WSGI ---------------------------------------------------------------------------------


def _wsgi_stream(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    release = _query_value(environ.get("QUERY_STRING", ""), "release")
    start_response("200 OK", STREAMING_HEADERS)
    yield FIRST
    yield RELEASED if _released(release) else TIMED_OUT


def _write_mark(path: str, outcome: bytes) -> None:
    """How an app that ran until stopped or timed out tells the test which it was."""
    with open(path, "wb") as file:
        file.write(outcome)


def _endless_deadline(query: str) -> float:
    return time.monotonic() + float(_query_value(query, "seconds") or ENDLESS_SECONDS)


def _wsgi_endless(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """Until the server closes the iterable (PEP 3333), which it does when the client is
    gone: GeneratorExit at the ``yield``."""
    query = environ.get("QUERY_STRING", "")
    mark = _query_value(query, "mark")
    start_response("200 OK", STREAMING_HEADERS)
    outcome = STOPPED
    try:
        deadline = _endless_deadline(query)
        while time.monotonic() < deadline:
            yield ENDLESS_LINE
            time.sleep(ENDLESS_PAUSE_SECONDS)
        outcome = FINISHED
    finally:
        _write_mark(mark, outcome)


def _wsgi_upload(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    mark = b"%s %d" % testapps.read_whole_body(environ)
    _write_mark(_query_value(environ.get("QUERY_STRING", ""), "mark"), mark)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(mark)))])
    return [mark]


def _big_headers(query: str) -> list[tuple[str, str]]:
    size, count = int(_query_value(query, "size") or 0), int(_query_value(query, "count") or 1)
    return [(f"X-Big-{number}", "h" * size) for number in range(count)]


def _wsgi_headers(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    headers = _big_headers(environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Type", "text/plain"), *headers])
    return [b"big headers\n"]


def _wsgi_redirect(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    location = environ["SCRIPT_NAME"] + "/echo/landed"
    start_response(
        "302 Found",
        [
            ("Location", location),
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(REDIRECTED))),
        ],
    )
    return [REDIRECTED]


def _early_size(query: str) -> int:
    return int(query.partition("size=")[2] or 0)


def _early_parts(size: int) -> Iterator[bytes]:
    for start in range(0, size, EARLY_PART_BYTES):
        yield b"x" * min(EARLY_PART_BYTES, size - start)


def _wsgi_early(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    size = _early_size(environ.get("QUERY_STRING", ""))
    length = size or len(TOO_LARGE)
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(length))]
    start_response("413 Content Too Large", headers)
    return _early_parts(size) if size else [TOO_LARGE]


def _wsgi_method(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(METHOD_BODY))),
            ("X-Request-Method", environ["REQUEST_METHOD"]),
        ],
    )
    return [METHOD_BODY]


WSGI_ROUTES = {
    "echo": testapps.echo,
    "stream": _wsgi_stream,
    "endless": _wsgi_endless,
    "upload": _wsgi_upload,
    "headers": _wsgi_headers,
    "redirect": _wsgi_redirect,
    "early": _wsgi_early,
    "method": _wsgi_method,
    "diagnostics": diagnostics.app,
}


def wsgi_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    handler = WSGI_ROUTES.get(_route(environ.get("PATH_INFO", "")), testapps.router)
    return handler(environ, start_response)


# -- ASGI ---------------------------------------------------------------------------------

ASGI_STREAMING_HEADERS = [(b"content-type", b"text/plain"), (b"x-accel-buffering", b"no")]


async def _start(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _asgi_stream(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    release = _query_value(scope["query_string"].decode("latin-1"), "release")
    await _start(send, 200, ASGI_STREAMING_HEADERS)
    await send({"type": "http.response.body", "body": FIRST, "more_body": True})
    released = await asyncio.get_running_loop().run_in_executor(None, _released, release)
    await send({"type": "http.response.body", "body": RELEASED if released else TIMED_OUT})


async def _asgi_endless(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Until ``send`` raises, as the ASGI spec has it do once the client is gone (an
    OSError)."""
    query = scope["query_string"].decode("latin-1")
    mark = _query_value(query, "mark")
    await _start(send, 200, ASGI_STREAMING_HEADERS)
    outcome = STOPPED
    try:
        deadline = _endless_deadline(query)
        while time.monotonic() < deadline:
            await send({"type": "http.response.body", "body": ENDLESS_LINE, "more_body": True})
            await asyncio.sleep(ENDLESS_PAUSE_SECONDS)
        outcome = FINISHED
    finally:
        _write_mark(mark, outcome)
    await send({"type": "http.response.body", "body": b""})


async def _asgi_disconnect(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """A long poll: the app answers nothing until the client leaves (or the time is up)."""
    query = scope["query_string"].decode("latin-1")
    mark = _query_value(query, "mark")
    seconds = float(_query_value(query, "seconds") or ENDLESS_SECONDS)

    async def disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    outcome = TIMED_OUT.strip()
    try:
        await asyncio.wait_for(disconnect(), seconds)
        outcome = DISCONNECTED
    except asyncio.TimeoutError:
        pass
    _write_mark(mark, outcome)
    if outcome != DISCONNECTED:
        await _start(send, 204, [])
        await send({"type": "http.response.body", "body": b""})


async def _asgi_upload(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    outcome, received = await asgiapps.receive_whole_body(receive)
    mark = b"%s %d" % (outcome, received)
    _write_mark(_query_value(scope["query_string"].decode("latin-1"), "mark"), mark)
    if outcome == asgiapps.WHOLE:
        await _start(send, 200, [(b"content-type", b"text/plain")])
        await send({"type": "http.response.body", "body": mark})


async def _asgi_headers(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    headers = _big_headers(scope["query_string"].decode("latin-1"))
    encoded = [(name.lower().encode(), value.encode()) for name, value in headers]
    await _start(send, 200, [(b"content-type", b"text/plain"), *encoded])
    await send({"type": "http.response.body", "body": b"big headers\n"})


async def _asgi_redirect(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    location = (scope["root_path"] + "/echo/landed").encode()
    await _start(
        send,
        302,
        [
            (b"location", location),
            (b"content-type", b"text/plain"),
            (b"content-length", b"%d" % len(REDIRECTED)),
        ],
    )
    await send({"type": "http.response.body", "body": REDIRECTED})


async def _asgi_early(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    size = _early_size(scope["query_string"].decode("latin-1"))
    length = b"%d" % (size or len(TOO_LARGE))
    await _start(send, 413, [(b"content-type", b"text/plain"), (b"content-length", length)])
    for part in _early_parts(size) if size else [TOO_LARGE]:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _asgi_method(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await _start(
        send,
        200,
        [
            (b"content-type", b"text/plain"),
            (b"content-length", b"%d" % len(METHOD_BODY)),
            (b"x-request-method", scope["method"].encode()),
        ],
    )
    await send({"type": "http.response.body", "body": METHOD_BODY})


ASGI_ROUTES = {
    "echo": asgiapps.echo,
    "stream": _asgi_stream,
    "endless": _asgi_endless,
    "disconnect": _asgi_disconnect,
    "upload": _asgi_upload,
    "headers": _asgi_headers,
    "redirect": _asgi_redirect,
    "early": _asgi_early,
    "method": _asgi_method,
}


async def asgi_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError(f"no {scope['type']} here")  # lifespan unsupported: auto skips it
    path = scope["path"][len(scope["root_path"]) :]
    handler = ASGI_ROUTES.get(_route(path), asgiapps.router)
    await handler(scope, receive, send)
