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
from collections.abc import Callable, Iterator
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
        self.stop_gracefully: Callable[[], None] = lambda: None

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
def serving(loop_kind: str, **settings: Any) -> Iterator[Served]:
    path = f"{short_tempdir()}/s"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    config = Config(app="x", interface="asgi", loop=loop_kind, lifespan="off", **settings)
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

    def stop_gracefully() -> None:
        assert served.loop is not None
        served.loop.call_soon_threadsafe(server.request_stop)

    served.stop_gracefully = stop_gracefully
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


def whole_request(client: FastCGIClient, path: str, *, keep: bool) -> bytes:
    """A GET as nginx writes it (BEGIN_REQUEST, PARAMS, the empty STDIN), kept or not."""
    started = RequestStarted(1, Role.RESPONDER, keep, tuple(build_params("GET", path)))
    return client.protocol.send(started) + client.protocol.send(InputEnd(1))


def get(served: Served, path: str) -> bytes:
    """A GET in one write, as nginx sends it: BEGIN_REQUEST, PARAMS, the empty STDIN."""
    with FastCGIClient(served.address, timeout=10) as client:
        with served.loop_held():
            assert client.sock  # connects now: the protocol state made with the socket is kept
            client.send_raw(whole_request(client, path, keep=False))
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
        """Once the server has closed its side of the connections the client closed (it
        does so after reading each close): the count that held still for 0.3 s."""
        count, since, deadline = -1, 0.0, time.monotonic() + 5
        while time.monotonic() < deadline:
            now_count = len(os.listdir("/proc/self/fd"))
            if now_count != count:
                count, since = now_count, time.monotonic()
            elif time.monotonic() - since >= 0.3:
                break
            time.sleep(0.02)
        return count

    def each_way() -> None:
        assert get(served, "/") == b"Hello, world!"  # inline
        assert get(served, "/sleep") == b"Hello, world!"  # handed over
        with FastCGIClient(served.address, timeout=10) as client:  # kept: handed over
            for _ in range(2):  # by its second request at the latest
                response = client.request(build_params("GET", "/"), keep_connection=True)
                assert response.body == b"Hello, world!"

    each_way()  # what the event loop makes once for its first transports
    before = open_fds()
    for _ in range(10):
        each_way()
    assert open_fds() == before
    assert served.handovers == 22


def test_a_kept_connection_closed_after_one_request_never_gets_a_transport(
    served: Served,
) -> None:
    """nginx with more requests at once than its `keepalive` count closes kept connections
    after one request: answered inline and then watched, each costs no transport."""
    for _ in range(5):
        with FastCGIClient(served.address, timeout=10) as client:
            with served.loop_held():
                assert client.sock
                client.send_raw(whole_request(client, "/", keep=True))
            response = client.read_response(1, keep_connection=True)
            assert (response.status, response.body) == (200, b"Hello, world!")
    assert served.handovers == 0


def test_a_kept_connection_answered_inline_serves_its_next_requests(served: Served) -> None:
    """The second request on a kept connection comes while the loop watches it: it is
    answered, and the connection gets its transport then, once."""
    with FastCGIClient(served.address, timeout=10) as client:
        with served.loop_held():
            assert client.sock
            client.send_raw(whole_request(client, "/", keep=True))
        assert client.read_response(1, keep_connection=True).body == b"Hello, world!"
        for path in ("/", "/sleep", "/big"):
            client.send_raw(whole_request(client, path, keep=True))
            body = client.read_response(1, keep_connection=True).body
            assert body == (BIG if path == "/big" else b"Hello, world!")
    assert served.handovers == 1


def test_a_watched_kept_connection_is_closed_when_idle_too_long() -> None:
    """The idle timeout still closes a kept connection that waits without a transport."""
    with serving("asyncio", idle_timeout_seconds=1) as served:
        with FastCGIClient(served.address, timeout=10) as client:
            with served.loop_held():
                assert client.sock
                client.send_raw(whole_request(client, "/", keep=True))
            assert client.read_response(1, keep_connection=True).body == b"Hello, world!"
            client.sock.settimeout(10)
            started = time.monotonic()
            assert client.sock.recv(1) == b""  # the server closed it
            assert time.monotonic() - started < 9
        assert served.handovers == 0


def test_a_graceful_stop_closes_a_watched_kept_connection(served: Served) -> None:
    with FastCGIClient(served.address, timeout=10) as client:
        with served.loop_held():
            assert client.sock
            client.send_raw(whole_request(client, "/", keep=True))
        assert client.read_response(1, keep_connection=True).body == b"Hello, world!"
        served.stop_gracefully()
        client.sock.settimeout(10)
        assert client.sock.recv(1) == b""  # closed by the stop, not left to the timeout
    assert served.handovers == 0
