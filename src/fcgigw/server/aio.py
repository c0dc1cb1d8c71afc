"""The asyncio backend for ASGI applications: listeners, one FastCGIProtocol per connection,
a task per request, the deadline sweep, and lifespan around it all."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..adapters.asgi import ASGIApp, run_asgi
from ..adapters.lifespan import Lifespan
from ..adapters.response import timed_out
from ..config import Config
from .aio_channel import AsyncChannel
from .aio_connection import FastCGIProtocol
from .aio_inline import accept_connections
from .aio_stop import finish_requests
from .connection_limit import Admission
from .core import CoreSettings
from .lifecycle import TICK_SECONDS, RequestEnd
from .listeners import describe, open_listeners
from .monitor import make_monitor
from .scoreboard import Seat

logger = logging.getLogger("fcgigw.server")


class AsyncServer:
    """Serves one ASGI application on the configured listeners until stopped."""

    def __init__(
        self,
        app: ASGIApp,
        config: Config,
        listeners: list[socket.socket] | None = None,
        seat: Seat | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.listeners = listeners if listeners is not None else open_listeners(config)
        self.admission = Admission(config)
        # §4.1 FCGI_MAX_REQS: one event loop runs every connection's requests.
        concurrent = config.max_connections * config.max_concurrent_requests_per_connection
        self.core_settings = CoreSettings.from_config(config, concurrent_requests=concurrent)
        self.request_body_memory_bytes = config.request_body_memory_bytes
        # Read per request: plain attributes, not the Config's (a Python object's lookups).
        self._root_path = config.root_path
        self._max_body_bytes = config.max_request_body_bytes
        #: The lifespan state each scope gets a copy of (set once the startup has run).
        self._state: dict[str, Any] | None = None
        self.lifespan = Lifespan(app, config.lifespan)
        self.connections: set[FastCGIProtocol] = set()
        #: A graceful stop has begun (connections made from now on are stopped as they start).
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set once serving
        self._fast_stop = False
        self._request_end = RequestEnd(config, self.request_stop)
        #: Reports to the scoreboard (status page, supervisor), when one is given.
        self.monitor = make_monitor(config, seat, self.admission, self._request_end)
        #: Called once the server accepts connections (a supervised worker reports readiness).
        self.on_ready: Callable[[], None] | None = None

    # -- requests --------------------------------------------------------------------------

    def new_future(self) -> asyncio.Future[None]:
        """A future on the serving loop, for a request that waits (for its body, for the
        transport to drain): the loop serve() kept, since in Python 3.11 each
        get_running_loop() costs a getpid() system call."""
        return (self._loop or asyncio.get_running_loop()).create_future()

    def start_request(self, channel: AsyncChannel) -> None:
        # The task leaves _tasks at the end of _run rather than by a done callback, which
        # would cost a loop callback per request.
        # The loop serve() kept: in Python 3.11 get_running_loop() costs a getpid() call.
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._run(channel))
        channel.task = task
        self._tasks.add(task)

    async def _run(self, channel: AsyncChannel) -> None:
        try:
            await run_asgi(
                self.app,
                channel,
                root_path=self._root_path,
                state=self._state,
                max_body_bytes=self._max_body_bytes,
            )
            self._request_end(channel.request)
        except asyncio.CancelledError:
            pass  # timed out (already answered 504) or stopped
        finally:
            if channel.task is not None:
                self._tasks.discard(channel.task)
                # channel -> task -> this coroutine -> channel: broken here, so the request's
                # objects go by reference counting, not by the cycle collector.
                channel.task = None

    def _sweep(self) -> None:
        """Every TICK_SECONDS: the deadlines of every connection's core."""
        now = time.monotonic()
        connections = list(self.connections)
        for connection in connections:
            for request in connection.tick(now):
                handler = request.handler
                assert isinstance(handler, AsyncChannel)
                seconds = self.config.request_timeout_seconds
                timed_out(handler, seconds, "cancelled", headers_sent=request.bytes_sent > 0)
                handler.abort()
                if handler.task is not None:
                    handler.task.cancel()
                    if self.monitor is not None:
                        self.monitor.cancelled(handler.task)
        if self.monitor is not None:
            self.monitor.tick(connections, now)
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(TICK_SECONDS, self._sweep)

    # -- running and stopping ----------------------------------------------------------------

    def request_stop(self, fast: bool = False) -> None:
        """Ask the server to stop (from a signal handler or another task)."""
        self._fast_stop = self._fast_stop or fast
        if self._stop is not None:
            self._stop.set()

    async def serve(self) -> None:
        """Lifespan startup, serve until asked to stop, drain, lifespan shutdown."""
        loop = self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            # Before the lifespan startup: the sockets already listen, so a SIGTERM may come
            # at any time now, and it must stop us cleanly (exit 0, lifespan shutdown).
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop, True)
            if signal.getsignal(signal.SIGQUIT) is not signal.SIG_IGN:  # a worker ignores it
                loop.add_signal_handler(signal.SIGQUIT, self.request_stop, True)
        await self.lifespan.startup()
        self._state = self.lifespan.state if self.lifespan.supported else None
        # Accepted here, not by loop.create_server: see aio_inline.
        make_protocol = partial(FastCGIProtocol, self)
        for sock in self.listeners:
            sock.setblocking(False)
            family, kind = int(sock.family), int(sock.type)
            loop.add_reader(
                sock.fileno(), accept_connections, loop, sock, family, kind, make_protocol
            )
        self._sweeper = loop.call_later(TICK_SECONDS, self._sweep)
        loop_name = type(loop).__module__.partition(".")[0]  # "asyncio" or "uvloop"
        for sock in self.listeners:
            logger.info("fcgigw serving ASGI on %s (%s event loop)", describe(sock), loop_name)
        if self.on_ready is not None:
            self.on_ready()
        await self._stop.wait()
        for sock in self.listeners:
            loop.remove_reader(sock.fileno())
            sock.close()  # a Unix socket file goes now
        # A graceful stop (aio_stop): each core finishes its requests, in the graceful timeout.
        timeout = self.config.graceful_timeout_seconds
        await finish_requests(self, self._tasks, timeout, fast=self._fast_stop)
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.lifespan.shutdown()
        logger.info("fcgigw stopped")

    def serve_forever(self) -> None:
        """Run until SIGTERM (graceful) or SIGINT (fast)."""
        loop = new_event_loop(self.config.loop)
        try:
            loop.run_until_complete(self.serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """uvloop for ``uvloop``, and for ``auto`` when it is installed; asyncio's otherwise."""
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if kind != "asyncio":
        try:
            import uvloop  # noqa: PLC0415 (optional: the "fast" extra)
        except ImportError:
            pass  # "auto" without uvloop; Config refuses "uvloop" when it is missing
        else:
            factory = uvloop.new_event_loop
    loop = factory()
    asyncio.set_event_loop(loop)
    return loop
