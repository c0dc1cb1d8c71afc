"""The asyncio backend answers a whole request on a new connection without an event-loop
transport, and hands the socket to one whenever the connection needs it (aio_inline).

Each test runs a real AsyncServer in a thread on a Unix socket, counts the handovers
(loop.connect_accepted_socket), and checks what the web server receives: the same bytes,
in the same order, whichever way the connection went.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from servers import short_tempdir

from fcgigw.client import FastCGIClient, build_params
from fcgigw.config import Config
from fcgigw.protocol import (
    AbortRequest,
    EndRequest,
    InputEnd,
    OutputData,
    RecordType,
    RequestStarted,
    Role,
)
from fcgigw.server.aio import AsyncServer

BIG = bytes(range(256)) * 16384  # 4 MiB


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    path = scope["path"]
    body = b"Hello, world!"
    if path == "/sleep":
        await asyncio.sleep(0.2)
    elif path == "/big":
        body = BIG
    elif path == "/until-disconnect":
        while (await receive())["type"] != "http.disconnect":
            pass
        body = b"gone"
    headers = [(b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Served:
    def __init__(self, address: str) -> None:
        self.address = address
        self.handovers = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def loop_held(self) -> Iterator[None]:
        """The server's loop waits meanwhile: what the client writes now is there by the
        time the server accepts (else it may accept first, find nothing and hand over)."""
        assert self.loop is not None
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            held.set()
            release.wait(10)

        self.loop.call_soon_threadsafe(hold)
        assert held.wait(10)
        try:
            yield
        finally:
            release.set()


@contextlib.contextmanager
def serving(loop_kind: str) -> Iterator[Served]:
    path = f"{short_tempdir()}/s"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    config = Config(app="x", interface="asgi", loop=loop_kind, lifespan="off")
    server = AsyncServer(app, config, listeners=[listener])
    served = Served(f"unix:{path}")
    ready = threading.Event()

    def on_ready() -> None:
        loop = asyncio.get_running_loop()
        connect = loop.connect_accepted_socket

        async def counted(*args: Any, **kwargs: Any) -> Any:
            served.handovers += 1
            return await connect(*args, **kwargs)

        loop.connect_accepted_socket = counted  # type: ignore[method-assign]
        served.loop = loop
        ready.set()

    server.on_ready = on_ready
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        yield served
    finally:
        assert server._loop is not None
        server._loop.call_soon_threadsafe(server.request_stop, True)
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture(params=["uvloop", "asyncio"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    with serving(request.param) as served:
        yield served


def get(served: Served, path: str) -> bytes:
    """A GET in one write, as nginx sends it: BEGIN_REQUEST, PARAMS, the empty STDIN."""
    with FastCGIClient(served.address, timeout=10) as client:
        started = RequestStarted(1, Role.RESPONDER, False, tuple(build_params("GET", path)))
        with served.loop_held():
            assert client.sock  # connects now: the protocol state made with the socket is kept
            client.send_raw(client.protocol.send(started) + client.protocol.send(InputEnd(1)))
        response = client.read_response(1)
        assert response.status == 200
        return response.body


def test_a_whole_request_on_a_new_connection_needs_no_transport(served: Served) -> None:
    for _ in range(20):
        assert get(served, "/") == b"Hello, world!"
    assert served.handovers == 0


def test_a_request_in_two_writes_gets_a_transport(served: Served) -> None:
    """The client library writes PARAMS and STDIN separately: the first read may not hold
    the whole request, and then the connection is handed over to read the rest."""
    for _ in range(5):
        with FastCGIClient(served.address, timeout=10) as client:
            assert client.request(build_params("GET", "/")).body == b"Hello, world!"
    assert served.handovers <= 5


def test_a_kept_connection_gets_a_transport_once(served: Served) -> None:
    with FastCGIClient(served.address, timeout=10) as client:
        for _ in range(3):
            response = client.request(build_params("GET", "/"), keep_connection=True)
            assert response.body == b"Hello, world!"
    assert served.handovers == 1


def test_an_app_that_awaits_gets_a_transport(served: Served) -> None:
    assert get(served, "/sleep") == b"Hello, world!"
    assert served.handovers == 1


def test_a_response_bigger_than_the_socket_buffer_arrives_whole_and_in_order(
    served: Served,
) -> None:
    body = get(served, "/big")
    assert hashlib.sha256(body).digest() == hashlib.sha256(BIG).digest()
    assert served.handovers == 1  # the first short send handed the socket over


def test_an_abort_reaches_an_app_that_was_answering_inline(served: Served) -> None:
    """The app waits for http.disconnect: its connection was handed over after the task's
    first step, so the ABORT_REQUEST that comes later is read and ends the request."""
    with FastCGIClient(served.address, timeout=10) as client:
        client.begin(build_params("GET", "/until-disconnect"))
        client.send_stream(1, b"", RecordType.STDIN)
        time.sleep(0.2)  # the app is waiting by now
        client.send_event(AbortRequest(1))
        events = []
        while not events or not isinstance(events[-1], EndRequest):
            events.append(client.next_event())  # a timeout here: the abort was not seen
    assert served.handovers == 1
    assert not [e for e in events if isinstance(e, OutputData) and e.data]  # aborted: no body


def test_connections_leave_no_file_descriptor_whether_handed_over_or_not(
    served: Served,
) -> None:
    """A connection is accepted as a bare socket and becomes a socket.socket only when a
    transport takes it: each way, closing it closes its fd exactly once."""

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def each_way() -> None:
        assert get(served, "/") == b"Hello, world!"  # inline
        assert get(served, "/sleep") == b"Hello, world!"  # handed over
        with FastCGIClient(served.address, timeout=10) as client:  # handed over, kept
            response = client.request(build_params("GET", "/"), keep_connection=True)
            assert response.body == b"Hello, world!"

    each_way()  # what the event loop makes once for its first transports
    before = open_fds()
    for _ in range(10):
        each_way()
    deadline = time.monotonic() + 5
    while open_fds() > before and time.monotonic() < deadline:
        time.sleep(0.05)  # the server closes its side once it has read the client's close
    assert open_fds() == before
    assert served.handovers == 22
