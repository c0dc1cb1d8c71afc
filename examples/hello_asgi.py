"""The smallest ASGI 3 app, the twin of hello.py: ``python -m fcgigw examples.hello_asgi:app``.

fcgigw tells it from WSGI by its ``async def``; add ``--interface asgi`` to say so explicitly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Hello, world (13 bytes), the benchmark's app; acknowledges lifespan startup/shutdown."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"Hello, world!"})
    else:  # ASGI 3: an app raises on a scope type it does not support (e.g. websocket)
        raise NotImplementedError(f"unsupported scope type {scope['type']!r}")
