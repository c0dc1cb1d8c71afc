"""Apps that misbehave on purpose, for tests/server/test_reliability.py (``faultapps:wsgi``,
``faultapps:asgi``): errors, invalid responses, hangs, crashes, huge and endless responses.

Both routers pick the app by the first path segment and read parameters from the query
string. Lines for the tests to wait on go to stderr, which is fcgigw's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Text that must never reach the client: it is in every error the apps raise.
SECRET = "s3cret-in-the-traceback"
MIB = 1024 * 1024
CHUNK = 64 * 1024


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def query(text: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in text.split("&") if part)


# -- WSGI ------------------------------------------------------------------------------------


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Reads the whole body; answers with its length, the CGI variables and the proxies
    urllib would use (httpoxy)."""
    note(f"echo called {environ['QUERY_STRING']}")
    body = environ["wsgi.input"].read()
    seen = {k: v for k, v in environ.items() if isinstance(v, str) and not k.startswith("wsgi.")}
    seen["body_length"] = str(len(body))
    seen["proxies"] = json.dumps(urllib.request.getproxies())
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


def stream(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """``?mib=N`` MiB in 64 KiB chunks, noting each MiB produced and where it stopped."""
    total = int(query(environ["QUERY_STRING"]).get("mib", "1"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    produced = 0
    try:
        for produced in range(1, total * MIB // CHUNK + 1):
            yield b"x" * CHUNK
            if produced % (MIB // CHUNK) == 0:
                note(f"stream produced {produced * CHUNK // MIB} MiB")
    finally:
        note(f"stream closed after {produced * CHUNK // MIB} MiB")


def sleep(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answers after ``?seconds=S``; ``late`` in the body tells a late answer apart."""
    time.sleep(float(query(environ["QUERY_STRING"]).get("seconds", "1")))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"late body"]


def block(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    note("block: blocking forever")
    threading.Event().wait()
    raise AssertionError("unreachable")


def raises(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError(f"the app failed ({SECRET})")


def non_bytes(environ: dict[str, Any], start_response: StartResponse) -> Iterable[Any]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"a str, not bytes ({SECRET})"]


def non_bytes_iterator(environ: dict[str, Any], start_response: StartResponse) -> Iterator[Any]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield 42


BAD_STATUSES = {
    "letters": "2OO OK",
    "no-space": "200OK",
    "four-digits": "2000 OK",
    "empty": "",
    "crlf": f"200 OK\r\nSet-Cookie: {SECRET}",
}


def bad_status(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response(BAD_STATUSES[environ["QUERY_STRING"]], [("Content-Type", "text/plain")])
    return [SECRET.encode()]


def crlf_header(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("X-Evil", f"a\r\nSet-Cookie: {SECRET}")])
    return [b"never sent"]


def start_twice(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("404 Not Found", [("X-Secret", SECRET)])
    return [b"never sent"]


def exits(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    note("exits: calling os._exit(7)")
    os._exit(7)


WSGI_ROUTES: dict[str, Callable[[dict[str, Any], StartResponse], Iterable[Any]]] = {
    "hello": hello,
    "echo": echo,
    "stream": stream,
    "sleep": sleep,
    "block": block,
    "raises": raises,
    "non_bytes": non_bytes,
    "non_bytes_iterator": non_bytes_iterator,
    "bad_status": bad_status,
    "crlf_header": crlf_header,
    "start_twice": start_twice,
    "exits": exits,
}


def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[Any]:
    name = environ.get("PATH_INFO", "/").strip("/").split("/", 1)[0] or "hello"
    return WSGI_ROUTES[name](environ, start_response)


# -- ASGI ------------------------------------------------------------------------------------


async def respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def a_hello(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await respond(send, 200, b"Hello, world!")


async def a_echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    note(f"echo called {scope['query_string'].decode()}")
    length = 0
    while True:
        message = await receive()
        length += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    seen = {
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "body_length": str(length),
        "proxies": json.dumps(urllib.request.getproxies()),
    }
    await respond(send, 200, json.dumps(seen).encode())


async def a_stream(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    total = int(query(scope["query_string"].decode()).get("mib", "1"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    produced = 0
    try:
        for produced in range(1, total * MIB // CHUNK + 1):
            await send({"type": "http.response.body", "body": b"x" * CHUNK, "more_body": True})
            if produced % (MIB // CHUNK) == 0:
                note(f"stream produced {produced * CHUNK // MIB} MiB")
        await send({"type": "http.response.body", "body": b""})
    finally:
        note(f"stream closed after {produced * CHUNK // MIB} MiB")


async def a_sleep(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await asyncio.sleep(float(query(scope["query_string"].decode()).get("seconds", "1")))
    await respond(send, 200, b"late body")


async def a_block(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    note("block: blocking forever")
    await asyncio.Event().wait()


async def a_raises(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    raise RuntimeError(f"the app failed ({SECRET})")


async def a_non_bytes(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"a str ({SECRET})"})


async def a_bad_status(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    status = {"letters": "2OO", "four-digits": 2000, "negative": -200, "none": None}
    headers = [(b"content-type", b"text/plain")]
    message = {"type": "http.response.start", "headers": headers}
    message["status"] = status[scope["query_string"].decode()]
    await send(message)
    await send({"type": "http.response.body", "body": SECRET.encode()})


async def a_crlf_header(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    headers = [(b"x-evil", f"a\r\nSet-Cookie: {SECRET}".encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"never sent"})


async def a_start_twice(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.start", "status": 404, "headers": [(b"x", b"y")]})
    await send({"type": "http.response.body", "body": b"never sent"})


async def a_exits(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    note("exits: calling os._exit(7)")
    os._exit(7)


ASGI_ROUTES: dict[str, Callable[[dict[str, Any], Receive, Send], Awaitable[None]]] = {
    "hello": a_hello,
    "echo": a_echo,
    "stream": a_stream,
    "sleep": a_sleep,
    "block": a_block,
    "raises": a_raises,
    "non_bytes": a_non_bytes,
    "bad_status": a_bad_status,
    "crlf_header": a_crlf_header,
    "start_twice": a_start_twice,
    "exits": a_exits,
}


async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")  # --lifespan auto then serves without it
    name = scope["path"].strip("/").split("/", 1)[0] or "hello"
    await ASGI_ROUTES[name](scope, receive, send)
