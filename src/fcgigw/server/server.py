"""The server process: listeners, the worker threads, signals, and a clean stop."""

from __future__ import annotations

import logging
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType

from ..adapters.wsgi import WSGIApp, run_wsgi
from ..config import Config
from .channel import SocketChannel
from .connection import ServedConnection
from .connection_limit import ConnectionLimit
from .core import FIRST_RECORD_WAIT_SECONDS
from .lifecycle import RequestBudget
from .listeners import describe, open_listeners
from .logs import log_access
from .peers import PeerAllowlist
from .pool import Dispatcher, WorkerThreads
from .watchdog import Watchdog

logger = logging.getLogger("fcgigw.server")


class Server:
    """Serves one WSGI application on the configured listeners until stopped."""

    def __init__(
        self, app: WSGIApp, config: Config, listeners: list[socket.socket] | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.listeners = listeners if listeners is not None else open_listeners(config)
        self._allowlist = PeerAllowlist(config.allow_from)
        self._dispatcher = Dispatcher(self.listeners, self._allowlist)
        self._dispatcher.on_accept = self._on_accept
        self._dispatcher.on_resume = self._on_resume
        self._threads = WorkerThreads(self._dispatcher, config.threads)
        self._stop_requested = threading.Event()
        self._fast_stop = False
        self.budget = RequestBudget(config)
        #: Called once the server accepts connections (a supervised worker reports readiness).
        self.on_ready: Callable[[], None] | None = None
        self._watchdog = Watchdog()
        self._connection_limit = ConnectionLimit(config.max_connections)

    @property
    def addresses(self) -> list[str]:
        """Where this server listens, in --bind syntax (ports resolved)."""
        return [describe(sock) for sock in self.listeners]

    # -- work ----------------------------------------------------------------------------

    def _on_accept(self, sock: socket.socket, peer: str) -> Callable[[], None]:
        # Counted when served, not when accepted: the dispatcher accepts connections in
        # batches, and one ahead in the batch may be about to close.
        return lambda: self._admit(sock, peer)

    def _admit(self, sock: socket.socket, peer: str) -> None:
        if not self._connection_limit.admit():
            sock.close()
            return
        connection = ServedConnection(
            sock,
            peer,
            self.config,
            run_request=self._run_request,
            submit=self._dispatcher.submit,
            busy=self._dispatcher,
            watchdog=self._watchdog,
            on_close=self._connection_limit.release,
        )
        self._serve(connection)

    def _on_resume(self, connection: object) -> Callable[[], None]:
        assert isinstance(connection, ServedConnection)
        if not connection.fresh:  # a fresh one keeps the deadline it got at accept
            connection.expect_request()  # it became readable: a request is on its way
        return lambda: self._serve(connection)

    def _serve(self, connection: ServedConnection) -> None:
        if connection.serve():
            if self._stop_requested.is_set():
                if connection.fresh:
                    # Accepted as the stop came: its request is on the way (see stop()).
                    self._serve_last(connection)
                else:
                    connection.close()
            else:
                if not connection.fresh:
                    connection.expect_idle()
                self._dispatcher.park(connection.sock, connection)

    def _run_request(self, channel: SocketChannel) -> None:
        timeout = self.config.request_timeout_seconds
        if timeout:
            self._watchdog.set(channel, timeout, channel.time_out)
        run_wsgi(
            self.app,
            channel,
            root_path=self.config.root_path,
            max_body_bytes=self.config.max_request_body_bytes,
        )
        if timeout:
            self._watchdog.clear(channel)
        if self.config.access_log:
            log_access(channel)
        if self.budget.spend():
            self.request_stop()

    # -- running and stopping ------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads (returns at once)."""
        if self._allowlist and any(s.family == socket.AF_UNIX for s in self.listeners):
            logger.warning("--allow-from applies to TCP only; Unix sockets use --socket-mode")
        self._threads.start()
        for address in self.addresses:
            logger.info("fcgigw serving on %s (%d threads)", address, self.config.threads)
        if self.on_ready is not None:
            self.on_ready()

    def request_stop(self, fast: bool = False) -> None:
        """Ask the server to stop; safe from a signal handler (it only records)."""
        self._fast_stop = self._fast_stop or fast
        self._stop_requested.set()

    def wait(self) -> None:
        """Block until a stop is requested, then stop."""
        while not self._stop_requested.wait(1.0):
            pass
        self.stop(graceful=not self._fast_stop)

    def stop(self, graceful: bool = True) -> None:
        """Stop accepting; with ``graceful``, let in-flight requests finish (bounded)."""
        self._stop_requested.set()
        last_requests = []
        for connection in self._dispatcher.stop_accepting():
            assert isinstance(connection, ServedConnection)
            if graceful and connection.fresh:
                # Accepted just before the stop: its request is on the way. Closing it would
                # fail that request (seen during reloads under load), so serve it first.
                thread = threading.Thread(target=self._serve_last, args=(connection,))
                thread.start()
                last_requests.append(thread)
            else:
                connection.close()
        for sock in self.listeners:
            sock.close()
        timeout = self.config.graceful_timeout_seconds
        deadline = time.monotonic() + timeout
        for thread in last_requests:
            thread.join(timeout)
        if graceful and not self._threads.join(max(0.0, deadline - time.monotonic())):
            logger.warning("requests still running after %d s; exiting", timeout)
        self._watchdog.stop()
        logger.info("fcgigw stopped")

    def _serve_last(self, connection: ServedConnection) -> None:
        """Serve the request a fresh connection is about to send, then close it."""
        readable, _, _ = select.select([connection.sock], [], [], FIRST_RECORD_WAIT_SECONDS)
        if readable:
            connection.serve()
        connection.close()

    def serve_forever(self) -> None:
        """start(), stop on SIGTERM (graceful) or SIGINT (fast), when run in the main thread."""
        if threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        self.start()
        self.wait()

    def _install_signal_handlers(self) -> None:
        def graceful(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        def fast(signum: int, frame: FrameType | None) -> None:
            self.request_stop(fast=True)

        signal.signal(signal.SIGTERM, graceful)
        signal.signal(signal.SIGINT, fast)
