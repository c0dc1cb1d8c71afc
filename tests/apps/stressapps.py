"""Apps for tests/server/test_stress.py (``stressapps:wsgi``, ``stressapps:asgi``): every
response is predictable from its request, and carries the request's tag, so that the test can
tell one request's bytes from another's.

``/echo?tag=T``: ``T``, a newline, then the request body, with a Content-Length.
``/stream?tag=T&chunks=N&size=S&delay=MS``: N chunks of S bytes of ``T`` repeated, each written
as produced, MS milliseconds apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def pattern(tag: bytes, size: int) -> bytes:
    """``size`` bytes of ``tag`` repeated (the test builds the same)."""
    return (tag * (size // len(tag) + 1))[:size]


def query(text: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in text.split("&") if part)


def stream_params(text: str) -> tuple[bytes, int, int, float]:
    """(tag, chunks, size, delay in seconds) from the query string."""
    values = query(text)
    delay = int(values.get("delay", "0")) / 1000
    return values["tag"].encode(), int(values["chunks"]), int(values["size"]), delay


# -- WSGI ------------------------------------------------------------------------------------


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    body = query(environ["QUERY_STRING"])["tag"].encode() + b"\n" + environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def stream(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    tag, chunks, size, delay = stream_params(environ["QUERY_STRING"])
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(chunks):
        yield pattern(tag, size)
        time.sleep(delay)


def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    app = stream if environ.get("PATH_INFO", "/").startswith("/stream") else echo
    return app(environ, start_response)


# -- ASGI ------------------------------------------------------------------------------------


async def a_echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    body = bytearray(query(scope["query_string"].decode())["tag"].encode() + b"\n")
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # aborted: nobody to answer
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": bytes(body)})


async def a_stream(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    tag, chunks, size, delay = stream_params(scope["query_string"].decode())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(chunks):
        await send({"type": "http.response.body", "body": pattern(tag, size), "more_body": True})
        await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b""})


async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")  # --lifespan auto then serves without it
    app = a_stream if scope["path"].startswith("/stream") else a_echo
    await app(scope, receive, send)
