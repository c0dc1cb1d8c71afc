"""Apps for the operations tests (status page, slow log, stuck and fat workers, on-demand
pools): ``opsapps:wsgi`` and ``opsapps:asgi`` route by the first path segment.

- ``/hello``: a small answer, with the worker's pid.
- ``/slow?seconds=S``: waits in ``wait_in_the_app`` (the slow log must name it).
- ``/block``: never answers (a stuck request; the ASGI one ignores its cancellation).
- ``/freeze`` (ASGI): blocks the event loop itself.
- ``/allocate?mib=N``: keeps N MiB alive in the worker (RSS recycling).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MIB = 1024 * 1024
HELD: list[bytearray] = []


def query(text: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in text.split("&") if part)


def wait_in_the_app(seconds: float) -> None:
    time.sleep(seconds)


def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    name = environ.get("PATH_INFO", "/").strip("/").split("/", 1)[0]
    params = query(environ.get("QUERY_STRING", ""))
    if name == "slow":
        wait_in_the_app(float(params.get("seconds", "1")))
    elif name == "block":
        threading.Event().wait()
    elif name == "allocate":
        block = bytearray(int(params.get("mib", "1")) * MIB)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
        HELD.append(block)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{name} {os.getpid()}".encode()]


async def wait_in_the_app_async(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    name = scope["path"].strip("/").split("/", 1)[0]
    params = query(scope["query_string"].decode())
    if name == "slow":
        await wait_in_the_app_async(float(params.get("seconds", "1")))
    elif name == "freeze":
        time.sleep(3600)
    elif name == "block":
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # a stuck app: it ignores the cancellation too
    body = f"{name} {os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
