"""The ASGI server keeps its listeners' backlog.

asyncio's and uvloop's create_server(sock=...) call listen() again with a backlog of 100
unless told: the ASGI server, when it used create_server, answered a burst of new
connections (nginx without keep-alive) with a queue of 100 where the threaded server has
1024, and shrank the backlog of a socket it inherited (systemd's Backlog=) the same way.
A full queue is a 502. It now accepts by itself (aio_inline) and never listens again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from servers import short_tempdir

from fcgigw.config import Config
from fcgigw.server.aio import AsyncServer
from fcgigw.server.backlog import listen_queue
from fcgigw.server.listeners import LISTEN_BACKLOG


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Never called: nothing connects."""


@contextlib.contextmanager
def _serving(listener: socket.socket, loop: str) -> Iterator[AsyncServer]:
    config = Config(app="x", interface="asgi", loop=loop, lifespan="off")
    server = AsyncServer(_app, config, listeners=[listener])
    ready = threading.Event()
    server.on_ready = ready.set
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "the server did not start"
        yield server
    finally:
        loop_object = server._loop
        assert loop_object is not None
        loop_object.call_soon_threadsafe(server.request_stop, True)
        thread.join(10)
        assert not thread.is_alive()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize(
    ("family", "backlog"), [("unix", LISTEN_BACKLOG), ("unix", 77), ("tcp", 77)]
)
def test_serving_keeps_the_listen_backlog(loop: str, family: str, backlog: int) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    if family == "unix":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(f"{short_tempdir()}/s")
    else:
        listener = socket.socket(socket.AF_INET)
        listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    before = listen_queue(listener)
    if before is None:
        pytest.skip("this OS does not report a listening socket's backlog")
    assert before[1] == backlog
    with _serving(listener, loop):
        after = listen_queue(listener)
        assert after is not None
        assert after[1] == backlog  # not asyncio's default of 100
