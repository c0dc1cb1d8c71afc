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
from functools import partial
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
#: How often the header and idle timeouts are checked: a connection is closed between its
#: timeout and that plus twice this (the timeouts are whole seconds, and far from exact
#: anywhere: nginx checks its own every few hundred milliseconds).
TICK_SECONDS = 0.5


class LoopConnectionLimit(ConnectionLimit):
    """max_connections counted on the event loop's one thread: no lock to take per
    connection (the refusal, and its rate-limited log, stay the shared class's)."""

    def admit(self) -> bool:
        if self.open < self.limit:
            self.open += 1
            return True
        return super().admit()

    def release(self) -> None:
        self.open -= 1


class FastCGIProtocol(asyncio.Protocol):
    """One connection from the web server."""

    def __init__(self, server: AsyncServer, family: int | None = None) -> None:
        self.server = server
        self.connection = ServerConnection(server.protocol_settings)
        self.transport: asyncio.Transport | None = None
        self.channels: dict[int, AsyncChannel] = {}
        self.closed = False
        #: Nothing received yet: accepted, its web server's first records still on the way.
        self.fresh = True
        #: The listener's address family, when the server knows it (no socket lookup then).
        self._family = family
        self._unread_bytes = 0
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # The timeout being watched (see AsyncServer._sweep): its setting, its seconds (0: none),
        # and the server's tick when it began. Attributes, not a timer per connection: arming
        # and disarming happens on every request, and a TimerHandle costs more than the rest.
        self._watch_setting = ""
        self._watch_seconds = 0
        self._watch_since = 0
        self._idle = False  # kept open with no request: the idle timeout runs

    # -- timeouts ----------------------------------------------------------------------------

    def _arm(self, setting: str, seconds: int) -> None:
        """Close the connection unless something happens within ``seconds`` (0: never)."""
        self._watch_setting = setting
        self._watch_seconds = seconds
        self._watch_since = self.server.tick

    def _disarm(self) -> None:
        self._watch_seconds = 0

    def check_timeout(self, tick: int) -> None:
        """Close the connection if its watched timeout has passed by ``tick``: if the ticks
        since it was armed, less the one that may have begun just before, cover its seconds."""
        seconds = self._watch_seconds
        if not seconds or (tick - self._watch_since - 1) * TICK_SECONDS < seconds:
            return
        self._watch_seconds = 0
        setting = self._watch_setting
        what = "sent no complete request" if setting.startswith("header") else "was idle"
        logger.info("closing a connection: it %s for %d s (setting %s)", what, seconds, setting)
        self.close()

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport, so no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        family = self._family
        if family != socket.AF_UNIX:
            # A Unix-socket peer needs neither the allowlist nor TCP_NODELAY: only TCP (or a
            # listener of unknown family) pays for the socket and peer lookups.
            sock = transport.get_extra_info("socket")
            family = sock.family
            peer = transport.get_extra_info("peername")
            if not server.allowlist.allows(family, peer):
                logger.warning("refused connection from %s: not in --allow-from", peer[0])
                self.closed = True
                transport.close()
                return
            if family in (socket.AF_INET, socket.AF_INET6):
                # asyncio sets TCP_NODELAY only on sockets created with IPPROTO_TCP, which
                # ours are not. Without it, Nagle holds END_REQUEST back ~40 ms behind the web
                # server's delayed ACK on a kept connection.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not server.connection_limit.admit():
            self.closed = True
            transport.close()
            return
        server.connections.add(self)
        self._arm("header_timeout_seconds", server.header_timeout_seconds)

    def data_received(self, data: bytes) -> None:
        if self._idle:
            # The first bytes of a request after an idle spell: its PARAMS must come in time.
            self._idle = False
            self._arm("header_timeout_seconds", self.server.header_timeout_seconds)
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
        connections = self.server.connections
        if self in connections:
            connections.discard(self)
            self.server.connection_limit.release()
        if self.channels:
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
        connection = self.connection
        while not self.closed:
            try:
                event = connection.next_event()
            except RemoteProtocolError as error:
                limit = f" (setting {error.limit})" if error.limit else ""
                logger.warning("closing a connection: %s%s", error, limit)
                self.close()
                return
            automatic = connection.data_to_send()
            if automatic:
                self.write(automatic)
            # The events are final classes: an identity test of the type, not isinstance.
            kind = type(event)
            if kind is NeedData:
                return
            if kind is RequestStarted:
                self._start(cast(RequestStarted, event))
            elif kind is InputEnd:
                ended = cast(InputEnd, event)
                channel = self.channels.get(ended.request_id)
                if channel is not None:
                    channel.end_input(ended.stream)
            elif kind is InputData:
                data = cast(InputData, event)
                channel = self.channels.get(data.request_id)
                if channel is not None:
                    channel.feed(data.data, data.stream)
            elif kind is AbortRequest:
                channel = self.channels.get(cast(AbortRequest, event).request_id)
                if channel is not None:
                    channel.abort()
            elif kind is ConnectionClosed:
                self.close()  # the web server closed its end; nothing more will come
                return
            # Anything else is a stray record for a finished request (discarded by the core).

    def _start(self, event: RequestStarted) -> None:
        self._disarm()  # the PARAMS are whole: no header timeout now
        channel = AsyncChannel(self, event)
        self.channels[event.request_id] = channel
        self.server.start_request(channel)

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
        channels = self.channels
        channels.pop(channel.request_id, None)
        if self.connection.should_close:
            self.close()
        elif not channels:
            self._idle = True
            self._arm("idle_timeout_seconds", self.server.idle_timeout_seconds)

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
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
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
        self.connection_limit = LoopConnectionLimit(config.max_connections)
        self._tasks: set[asyncio.Task[None]] = set()
        # Read once here rather than per connection or request.
        self.protocol_settings = config.protocol_settings
        self.header_timeout_seconds = config.header_timeout_seconds
        self.idle_timeout_seconds = config.idle_timeout_seconds
        #: Counts TICK_SECONDS while serving (the timeouts' clock, see _sweep).
        self.tick = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._stop: asyncio.Event | None = None
        self._fast_stop = False
        self.budget = RequestBudget(config)
        #: Called once the server accepts connections (a supervised worker reports readiness).
        self.on_ready: Callable[[], None] | None = None

    def start_request(self, channel: AsyncChannel) -> None:
        # The task leaves _tasks at the end of _run rather than by a done callback, which
        # would cost a loop callback per request.
        task = asyncio.get_running_loop().create_task(self._run(channel))
        channel.task = task
        self._tasks.add(task)

    async def _run(self, channel: AsyncChannel) -> None:
        config = self.config
        try:
            request = run_asgi(
                self.app,
                channel,
                root_path=config.root_path,
                state=self.lifespan.state if self.lifespan.supported else None,
                max_body_bytes=config.max_request_body_bytes,
            )
            timeout = config.request_timeout_seconds
            if not timeout:
                await request  # no wait_for: it would cost a task of its own per request
            else:
                try:
                    await asyncio.wait_for(request, timeout)
                except asyncio.TimeoutError:
                    if not channel.finished:
                        headers_sent = channel.bytes_sent > 0
                        timed_out(channel, timeout, "cancelled", headers_sent=headers_sent)
            if config.access_log:
                log_access(channel)
            if self.budget.left is not None and self.budget.spend():
                self.request_stop()
        finally:
            self._tasks.discard(cast("asyncio.Task[None]", channel.task))

    def _sweep(self) -> None:
        """Every TICK_SECONDS: close the connections whose header or idle timeout passed."""
        self.tick += 1
        for connection in list(self.connections):
            connection.check_timeout(self.tick)
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(TICK_SECONDS, self._sweep)

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
            await loop.create_server(partial(FastCGIProtocol, self, sock.family), sock=sock)
            for sock in self.listeners
        ]
        self._sweeper = loop.call_later(TICK_SECONDS, self._sweep)
        loop_name = type(loop).__module__.partition(".")[0]  # "asyncio" or "uvloop"
        for sock in self.listeners:
            logger.info("fcgigw serving ASGI on %s (%s event loop)", describe(sock), loop_name)
        if self.on_ready is not None:
            self.on_ready()
        await self._stop.wait()
        for server in servers:
            server.close()
        await self._finish_requests()
        if self._sweeper is not None:
            self._sweeper.cancel()
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
