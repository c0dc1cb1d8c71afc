"""Raw ASGI 3 apps the tests run under fcgigw (``asgiapps:router``, ``asgiapps:with_lifespan``…)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def note(text: str) -> None:
    """A line in fcgigw's log (stderr), for tests to wait on."""
    print(text, file=sys.stderr, flush=True)


async def respond(
    send: Send, status: int, body: bytes, content_type: bytes = b"text/plain"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


#: How receive_whole_body's reading ended: more_body false, or http.disconnect first.
WHOLE, DISCONNECTED = b"whole", b"disconnected"


async def receive_whole_body(receive: Receive) -> tuple[bytes, int]:
    """Receive the body to its end, as an app saving an upload does: (WHOLE or DISCONNECTED,
    bytes received)."""
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return DISCONNECTED, received
        received += len(message.get("body", b""))
        if not message.get("more_body"):
            return WHOLE, received


async def body_outcome(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """testapps.body_outcome: ``body QUERY: whole N`` or ``body QUERY: disconnected N`` in
    the server's log, and as the answer when there is one to give."""
    outcome, received = await receive_whole_body(receive)
    line = b"body %s: %s %d" % (scope["query_string"], outcome, received)
    note(line.decode())
    if outcome == WHOLE:
        await respond(send, 200, line)


async def hello(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await respond(send, 200, b"Hello, world!")


async def echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    seen = {
        key: scope[key]
        for key in ("type", "asgi", "http_version", "method", "scheme", "path", "root_path")
    }
    seen["raw_path"] = scope["raw_path"].decode("latin-1") if scope["raw_path"] else None
    seen["query_string"] = scope["query_string"].decode("latin-1")
    seen["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    seen["client"] = scope["client"]
    seen["server"] = scope["server"]
    seen["role"] = scope["extensions"]["fastcgi"]["role"]
    seen["param_count"] = len(scope["extensions"]["fastcgi"]["params"])
    seen["state"] = scope.get("state")
    seen["body_length"] = len(body)
    seen["body_sha256"] = hashlib.sha256(body).hexdigest()
    await respond(send, 200, json.dumps(seen).encode(), b"application/json")


async def stream(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Three chunks 0.3 s apart: the first must reach the client before the app ends."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for number in range(3):
        await send(
            {"type": "http.response.body", "body": b"chunk %d\n" % number, "more_body": True}
        )
        await asyncio.sleep(0.3)
    await send({"type": "http.response.body", "body": b"end\n"})


async def big(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """4 MiB in 64 KiB chunks, each send waiting for the socket (backpressure)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(64):
        await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def slow_reader(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Reads the body slowly: the server must pause reading rather than buffer it all."""
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        digest.update(message.get("body", b""))
        size += len(message.get("body", b""))
        await asyncio.sleep(0.001)
        if not message.get("more_body"):
            break
    await respond(send, 200, f"{size} {digest.hexdigest()}".encode())


async def fail_before_start(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    raise RuntimeError("asgi failing on purpose")


async def fail_after_start(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("asgi failing after the start")


async def unfinished(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"started", "more_body": True})


async def silent(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    return None


async def out_of_order(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send({"type": "http.response.body", "body": b"body before start"})


async def bad_header(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"x-evil", b"a\r\nb: c")]}
    )
    await send({"type": "http.response.body", "body": b"never"})


async def wait_disconnect(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Reads the body, then waits for http.disconnect (abort or closed connection)."""
    await read_body(receive)
    note("waiting for disconnect")
    message = await receive()
    note(f"received {message['type']}")


async def stream_until_disconnect(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Starts a response, then waits for http.disconnect and returns without finishing it (a
    long poll or an event stream whose client went away)."""
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
    note("streaming until disconnect")
    message = await receive()
    note(f"stream got {message['type']}")


async def pathsend(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    path = scope["query_string"].decode().partition("=")[2]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.pathsend", "path": path})


async def filter_upper(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Filter role (§6.4) through the fastcgi extension: the file upper-cased as it arrives."""
    body = await read_body(receive)
    fastcgi = scope["extensions"]["fastcgi"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"stdin %d\n" % len(body), "more_body": True})
    received = 0
    while True:
        message = await fastcgi["receive_data"]()
        assert message["type"] == "fastcgi.data"
        received += len(message["body"])
        await send(
            {"type": "http.response.body", "body": message["body"].upper(), "more_body": True}
        )
        if not message["more_body"]:
            break
    params = dict(fastcgi["params"])
    expected = params.get(b"FCGI_DATA_LENGTH", b"").decode()
    state = "complete" if str(received) == expected else "data missing"
    await send(
        {
            "type": "http.response.body",
            "body": f"\n{received} of {expected} bytes: {state}".encode(),
        }
    )


async def data_outcome(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """body_outcome for a Filter's file (receive_data): ``data QUERY: whole N`` or
    ``disconnected N`` in the server's log."""
    await read_body(receive)
    receive_data = scope["extensions"]["fastcgi"]["receive_data"]
    outcome, received = await receive_whole_body(receive_data)
    line = b"data %s: %s %d" % (scope["query_string"], outcome, received)
    note(line.decode())
    if outcome == WHOLE:
        await respond(send, 200, line)


ROUTES = {
    name: app
    for name, app in globals().items()
    if callable(app)
    and name not in ("note", "respond", "read_body", "receive_whole_body", "router")
    and asyncio.iscoroutinefunction(app)
}


async def router(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError(f"router does not do {scope['type']}")  # lifespan unsupported
    path = scope["path"][len(scope["root_path"]) :]  # the path includes the root path
    name = path.strip("/").split("/")[0] or "hello"
    handler = ROUTES.get(name)
    if handler is None:
        await respond(send, 404, b"no such app")
        return
    await handler(scope, receive, send)


async def with_lifespan(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Supports lifespan: startup puts a value in the state, shutdown notes itself."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "connected"
                note("lifespan startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                note("lifespan shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await router(scope, receive, send)


async def failing_startup(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        return
    await router(scope, receive, send)


class Asgi2App:
    """An ASGI 2 double callable (asgiref turns it into ASGI 3)."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Receive, send: Send) -> None:
        if self.scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await respond(send, 200, b"asgi2 " + self.scope["path"].encode())
