"""The asyncio server for ASGI applications: a FastCGIProtocol per connection on the same
protocol core, listeners and allowlist as the threaded WSGI server; lifespan around it all.

Reading pauses while a connection holds more unread body than request_body_memory_bytes
(bounded memory for slow apps); writers wait for the transport to drain (backpressure).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Callable
from typing import cast

from ..adapters.asgi import ASGIApp, run_asgi
from ..adapters.lifespan import Lifespan
from ..adapters.response import timed_out
from ..config import Config
from ..protocol import (
    AbortRequest,
    ConnectionClosed,
    InputData,
    InputEnd,
    RemoteProtocolError,
    RequestStarted,
    ServerConnection,
)
from ..protocol.events import NeedData
from .aio_channel import AsyncChannel
from .connection_limit import ConnectionLimit
from .lifecycle import FIRST_RECORD_WAIT_SECONDS, RequestBudget
from .listeners import describe, open_listeners
from .logs import log_access
from .peers import PeerAllowlist

logger = logging.getLogger("fcgigw.server")


#: While stopping, how often to look whether the last requests have finished.
SHUTDOWN_POLL_SECONDS = 0.01


class FastCGIProtocol(asyncio.Protocol):
    """One connection from the web server."""

    def __init__(self, server: AsyncServer) -> None:
        self.server = server
        self.connection = ServerConnection(server.config.protocol_settings)
        self.transport: asyncio.Transport | None = None
        self.channels: dict[int, AsyncChannel] = {}
        self.closed = False
        #: Nothing received yet: accepted, its web server's first records still on the way.
        self.fresh = True
        self._unread_bytes = 0
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._idle = False  # kept open with no request: the idle timeout runs

    # -- timeouts ----------------------------------------------------------------------------

    def _arm(self, setting: str) -> None:
        """Close the connection unless something happens within the setting's seconds."""
        self._disarm()
        seconds = getattr(self.server.config, setting)
        if seconds and not self.closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(seconds, self._time_out, setting)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _time_out(self, setting: str) -> None:
        self._timer = None
        what = "sent no complete request" if setting.startswith("header") else "was idle"
        seconds = getattr(self.server.config, setting)
        logger.info("closing a connection: it %s for %d s (setting %s)", what, seconds, setting)
        self.close()

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport, so no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername")
        if not self.server.allowlist.allows(sock.family, peer):
            logger.warning("refused connection from %s: not in --allow-from", peer[0])
            self.closed = True
            transport.close()
            return
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets TCP_NODELAY only on sockets created with IPPROTO_TCP, which ours
            # are not. Without it, Nagle holds END_REQUEST back ~40 ms behind the web server's
            # delayed ACK on a kept connection.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.connection_limit.admit():
            self.closed = True
            transport.close()
            return
        self.server.connections.add(self)
        self._arm("header_timeout_seconds")

    def data_received(self, data: bytes) -> None:
        if self._idle:
            # The first bytes of a request after an idle spell: its PARAMS must come in time.
            self._idle = False
            self._arm("header_timeout_seconds")
        self.fresh = False
        self.connection.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.connection.receive_data(b"")
        self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.closed = True
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.connection_limit.release()
        for channel in list(self.channels.values()):
            channel.abort()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._reading_paused and self.transport:
            # The web server is not reading our response: it may be sending the whole body
            # before it reads anything (mod_fcgid, Caddy). Not reading it now would make each
            # side wait for the other, so take the body in, over the memory threshold.
            self._reading_paused = False
            self.transport.resume_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.input_buffered(0)  # back under the threshold's rule
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- events ----------------------------------------------------------------------------

    def _process(self) -> None:
        while not self.closed:
            try:
                event = self.connection.next_event()
            except RemoteProtocolError as error:
                limit = f" (setting {error.limit})" if error.limit else ""
                logger.warning("closing a connection: %s%s", error, limit)
                self.close()
                return
            automatic = self.connection.data_to_send()
            if automatic:
                self.write(automatic)
            if isinstance(event, NeedData):
                return
            if isinstance(event, ConnectionClosed):
                self.close()  # the web server closed its end; nothing more will come
                return
            self._dispatch(event)

    def _dispatch(self, event: object) -> None:
        if isinstance(event, RequestStarted):
            self._disarm()  # the PARAMS are whole
            started = AsyncChannel(self, event)
            self.channels[event.request_id] = started
            self.server.start_request(started)
            return
        channel = self.channels.get(getattr(event, "request_id", 0))
        if channel is None:
            return  # a stray record for a finished request (discarded by the core)
        if isinstance(event, AbortRequest):
            channel.abort()
        elif isinstance(event, InputData):
            channel.feed(event.data, event.stream)
        elif isinstance(event, InputEnd):
            channel.end_input(event.stream)

    # -- what channels call ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is over its high-water mark."""
        if self._writing_paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def request_done(self, channel: AsyncChannel) -> None:
        self.channels.pop(channel.request_id, None)
        if self.connection.should_close:
            self.close()
        elif not self.channels:
            self._idle = True
            self._arm("idle_timeout_seconds")

    def input_buffered(self, size: int) -> None:
        self._unread_bytes += size
        limit = self.server.config.request_body_memory_bytes
        paused = self._reading_paused or self._writing_paused
        if self._unread_bytes > limit and not paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()

    def input_consumed(self, size: int) -> None:
        self._unread_bytes -= size
        limit = self.server.config.request_body_memory_bytes
        if self._reading_paused and self._unread_bytes <= limit // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True


class AsyncServer:
    """Serves one ASGI application on the configured listeners until stopped."""

    def __init__(
        self, app: ASGIApp, config: Config, listeners: list[socket.socket] | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.listeners = listeners if listeners is not None else open_listeners(config)
        self.allowlist = PeerAllowlist(config.allow_from)
        self.lifespan = Lifespan(app, config.lifespan)
        self.connections: set[FastCGIProtocol] = set()
        self.connection_limit = ConnectionLimit(config.max_connections)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        self._fast_stop = False
        self.budget = RequestBudget(config)
        #: Called once the server accepts connections (a supervised worker reports readiness).
        self.on_ready: Callable[[], None] | None = None

    def start_request(self, channel: AsyncChannel) -> None:
        task = asyncio.get_running_loop().create_task(self._run(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, channel: AsyncChannel) -> None:
        state = self.lifespan.state if self.lifespan.supported else None
        request = run_asgi(
            self.app,
            channel,
            root_path=self.config.root_path,
            state=state,
            max_body_bytes=self.config.max_request_body_bytes,
        )
        timeout = self.config.request_timeout_seconds
        try:
            await asyncio.wait_for(request, timeout or None)
        except asyncio.TimeoutError:
            if not channel.finished:
                timed_out(channel, timeout, "cancelled", headers_sent=channel.bytes_sent > 0)
        if self.config.access_log:
            log_access(channel)
        if self.budget.spend():
            self.request_stop()

    def request_stop(self, fast: bool = False) -> None:
        """Ask the server to stop (from a signal handler or another task)."""
        self._fast_stop = self._fast_stop or fast
        if self._stop is not None:
            self._stop.set()

    async def serve(self) -> None:
        """Lifespan startup, serve until asked to stop, drain, lifespan shutdown."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            # Before the lifespan startup: the sockets already listen, so a SIGTERM may come
            # at any time now, and it must stop us cleanly (exit 0, lifespan shutdown).
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop, True)
        await self.lifespan.startup()
        servers = [
            await loop.create_server(lambda: FastCGIProtocol(self), sock=sock)
            for sock in self.listeners
        ]
        loop_name = type(loop).__module__.partition(".")[0]  # "asyncio" or "uvloop"
        for sock in self.listeners:
            logger.info("fcgigw serving ASGI on %s (%s event loop)", describe(sock), loop_name)
        if self.on_ready is not None:
            self.on_ready()
        await self._stop.wait()
        for server in servers:
            server.close()
        await self._finish_requests()
        await self.lifespan.shutdown()
        logger.info("fcgigw stopped")

    async def _finish_requests(self) -> None:
        """Let running requests finish, and those on connections accepted just before the
        stop arrive and finish (closing those would fail requests during a reload)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.graceful_timeout_seconds
        fresh_until = loop.time() + FIRST_RECORD_WAIT_SECONDS
        while not self._fast_stop and loop.time() < deadline:
            fresh = loop.time() < fresh_until and any(c.fresh for c in self.connections)
            if not (self._tasks or fresh):
                break
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=SHUTDOWN_POLL_SECONDS)
            else:
                await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
        if self._tasks and not self._fast_stop:
            logger.warning("%d requests still running; exiting", len(self._tasks))
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self.connections):
            connection.close()

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
