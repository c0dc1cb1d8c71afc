"""The ASGI 3 twins of wsgi_apps.py: same bodies, headers, chunking and reading pace.

Each app acknowledges lifespan, which fcgigw, fcgisgi and uvicorn all send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from wsgi_apps import CHUNK, STREAM_CHUNKS, pace

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _start(send: Send, content_type: bytes, length: int) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def hello(scope: Message, receive: Receive, send: Send) -> None:
    """Hello, world (13 bytes), as examples/hello_asgi.py."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await _start(send, b"text/plain", 13)
    await send({"type": "http.response.body", "body": b"Hello, world!"})
    return None


async def stream(scope: Message, receive: Receive, send: Send) -> None:
    """1 MiB in 64 KiB chunks; each send waits for the server's flow control."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await _start(send, b"application/octet-stream", len(CHUNK) * STREAM_CHUNKS)
    for index in range(STREAM_CHUNKS):
        more = index < STREAM_CHUNKS - 1
        await send({"type": "http.response.body", "body": CHUNK, "more_body": more})
    return None


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as the server delivers it."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _counted(send: Send, count: int) -> None:
    text = str(count).encode()
    await _start(send, b"text/plain", len(text))
    await send({"type": "http.response.body", "body": text})


async def upload(scope: Message, receive: Receive, send: Send) -> None:
    """Read the whole body and answer its length."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await _counted(send, sum([len(chunk) async for chunk in _chunks(receive)]))
    return None


async def slow_upload(scope: Message, receive: Receive, send: Send) -> None:
    """Read the body at SLOW_BYTES_PER_SECOND and answer its length."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    count, started = 0, time.monotonic()
    async for chunk in _chunks(receive):
        count += len(chunk)
        await asyncio.sleep(max(0.0, pace(started, count)))
    await _counted(send, count)
    return None
