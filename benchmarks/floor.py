"""The platform's floor for server_micro.py ``--floor``: the least a Python server can spend.

Two stand-ins for fcgigw that parse nothing and call no app: each waits for a request's
empty STDIN record and answers one canned, valid FastCGI response (the hello app's bytes).
``serve_asyncio`` is an asyncio Protocol on the same loop fcgigw would use (uvloop when
installed); ``serve_blocking`` is one thread with blocking sockets and a selector, no thread
pool. What fcgigw spends above these is its own code; what they spend is the event loop's,
the kernel's and the interpreter's, which no Python FastCGI server can go below.
server_micro.py ``--floor`` measures them without nginx; run.py's ``floor-asyncio`` target
behind it (``python3 benchmarks/floor.py asyncio SOCKET``).
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import struct
import sys
from collections.abc import Callable

_STDOUT_BODY = (
    b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"
)
#: STDOUT with the response, the empty STDOUT, END_REQUEST (request id 1, status 0).
RESPONSE = (
    struct.pack(">BBHHBx", 1, 6, 1, len(_STDOUT_BODY), (8 - len(_STDOUT_BODY) % 8) % 8)
    + _STDOUT_BODY
    + b"\0" * ((8 - len(_STDOUT_BODY) % 8) % 8)
    + struct.pack(">BBHHBx", 1, 6, 1, 0, 0)
    + struct.pack(">BBHHBx", 1, 3, 1, 8, 0)
    + struct.pack(">IB3x", 0, 0)
)
#: The empty STDIN record of request 1: the end of nginx's GET.
_END_OF_REQUEST = struct.pack(">BBHHBx", 1, 5, 1, 0, 0)
#: BEGIN_REQUEST's flags byte: FCGI_KEEP_CONN (§5.1).
_FLAGS_OFFSET = 8 + 2


def _complete(buffer: bytearray) -> bool:
    return buffer.endswith(_END_OF_REQUEST)


def _keep(buffer: bytearray) -> bool:
    return bool(buffer[_FLAGS_OFFSET] & 1)


class _FloorProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not _complete(buffer):
            return
        transport = self.transport
        assert transport is not None
        transport.write(RESPONSE)
        if _keep(buffer):
            buffer.clear()
        else:
            transport.close()


def serve_asyncio(
    listener: socket.socket, ready: Callable[[asyncio.AbstractEventLoop], None]
) -> None:
    """Serve on ``listener`` until the loop is stopped; ``ready`` runs in the loop first."""
    try:
        import uvloop  # noqa: PLC0415

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()

    async def main() -> None:
        server = await loop.create_unix_server(_FloorProtocol, sock=listener)
        ready(loop)
        await asyncio.Event().wait()
        server.close()

    try:
        loop.run_until_complete(main())
    except RuntimeError:  # "Event loop stopped before Future completed": the stop
        pass
    finally:
        loop.close()


def serve_blocking(listener: socket.socket, stopped: Callable[[], bool]) -> None:
    """Serve on ``listener`` in this thread until ``stopped()``."""
    selector = selectors.DefaultSelector()
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytearray] = {}
    while not stopped():
        for key, _ in selector.select(0.1):
            if key.fileobj is listener:
                try:
                    client, _ = listener.accept()
                except BlockingIOError:
                    continue
                buffers[client] = bytearray()
                selector.register(client, selectors.EVENT_READ)
                continue
            client = key.fileobj  # type: ignore[assignment]
            buffer = buffers[client]
            data = client.recv(65536)
            buffer += data
            if data and not _complete(buffer):
                continue
            if data:
                client.sendall(RESPONSE)
            if data and _keep(buffer):
                buffer.clear()
                continue
            selector.unregister(client)
            del buffers[client]
            client.close()
    selector.close()


def main() -> None:
    """``floor.py asyncio|blocking SOCKET``: serve hello on a Unix socket until SIGTERM
    (run.py's floor-asyncio target: the floor behind nginx)."""
    kind, path = sys.argv[1], sys.argv[2]
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(1024)
    if kind == "asyncio":

        def ready(loop: asyncio.AbstractEventLoop) -> None:
            loop.add_signal_handler(signal.SIGTERM, loop.stop)

        serve_asyncio(listener, ready)
        return
    stopped = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    serve_blocking(listener, lambda: stopped)


if __name__ == "__main__":
    main()
