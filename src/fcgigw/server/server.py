"""The threaded backend for WSGI applications: listeners, the pool, one ThreadedConnection
per connection, the clock that runs the cores' deadlines (thread_clock), signals, and a
clean stop."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Final

from ..adapters.wsgi import WSGIApp, run_wsgi
from ..config import Config
from .accept import ConnectionSocket
from .connection_limit import Admission, peer_name
from .core import CoreSettings
from .lifecycle import RequestEnd
from .listeners import describe, open_listeners
from .monitor import make_monitor
from .pool import Dispatcher, Work, WorkerThreads
from .scoreboard import Seat
from .thread_channel import ThreadChannel
from .thread_clock import ThreadClock
from .thread_connection import ThreadedConnection

_get_ident: Final = threading.get_ident

logger = logging.getLogger("fcgigw.server")

#: While stopping, how often to look whether the last connections have closed.
SHUTDOWN_POLL_SECONDS: Final = 0.01


class Server:
    """Serves one WSGI application on the configured listeners until stopped."""

    def __init__(
        self,
        app: WSGIApp,
        config: Config,
        listeners: list[socket.socket] | None = None,
        seat: Seat | None = None,
    ) -> None:
        self.app = app
        self.config = config
        # Read per request: plain attributes, not the Config's (a Python object's lookups).
        self._root_path = config.root_path
        self._max_body_bytes = config.max_request_body_bytes
        self.listeners = listeners if listeners is not None else open_listeners(config)
        self.admission = Admission(config)
        # §4.1 FCGI_MAX_REQS: the threads run the requests.
        self.core_settings = CoreSettings.from_config(config, concurrent_requests=config.threads)
        self.request_body_memory_bytes = config.request_body_memory_bytes
        self.shares_backlog = config.supervised
        self._dispatcher = Dispatcher(
            self.listeners, self._accepted, config.threads, share_backlog=self.shares_backlog
        )
        self._threads = WorkerThreads(self._dispatcher, config.threads)
        self._connections: set[ThreadedConnection] = set()
        self._connections_lock = threading.Lock()
        self._stop_requested = threading.Event()
        #: The event's state as a plain attribute: read for each connection accepted.
        self._stopping = False
        self._fast_stop = False
        self._request_end = RequestEnd(config, self.request_stop)
        #: Reports to the scoreboard (status page, supervisor), when one is given.
        self.monitor = make_monitor(config, seat, self.admission, self._request_end)
        self._clock = ThreadClock(
            self._snapshot, self.park, config.request_timeout_seconds, self.monitor
        )
        #: Called once the server accepts connections (a supervised worker reports readiness).
        self.on_ready: Callable[[], None] | None = None

    @property
    def addresses(self) -> list[str]:
        """Where this server listens, in --bind syntax (ports resolved)."""
        return [describe(sock) for sock in self.listeners]

    # -- what connections call (thread_connection.ConnectionHost) ------------------------------

    def _accepted(self, sock: ConnectionSocket, family: int, address: object) -> Work | None:
        """In the accepting thread: the connection counts from now (a stop waits for it,
        even before a thread serves it); the returned work serves it."""
        if not self.admission.admit(family, address):
            sock.close()
            return None
        connection = ThreadedConnection(sock, peer_name(family, address), self)
        with self._connections_lock:
            self._connections.add(connection)
        if self._stopping:
            connection.claim_for_stop(time.monotonic())  # accepted as the stop came
        return connection.serve

    def run_request(self, channel: ThreadChannel) -> None:
        channel.thread_ident = _get_ident()
        run_wsgi(
            self.app,
            channel,
            root_path=self._root_path,
            max_body_bytes=self._max_body_bytes,
        )
        self._request_end(channel.request)

    def submit(self, work: Work) -> None:
        self._dispatcher.submit(work)

    def park(self, connection: ThreadedConnection) -> None:
        self._dispatcher.park(connection)

    def closed(self, connection: ThreadedConnection) -> None:
        with self._connections_lock:
            self._connections.discard(connection)
        self.admission.release()

    def _snapshot(self) -> list[ThreadedConnection]:
        with self._connections_lock:
            return list(self._connections)

    # -- running and stopping --------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads and the clock (returns at once)."""
        if self.admission.allowlist and any(s.family == socket.AF_UNIX for s in self.listeners):
            logger.warning("--allow-from applies to TCP only; Unix sockets use --socket-mode")
        self._threads.start()
        self._clock.start()
        for address in self.addresses:
            logger.info("fcgigw serving on %s (%d threads)", address, self.config.threads)
        if self.on_ready is not None:
            self.on_ready()

    def request_stop(self, fast: bool = False) -> None:
        """Ask the server to stop; safe from a signal handler (it only records)."""
        self._fast_stop = self._fast_stop or fast
        self._stopping = True
        self._stop_requested.set()

    def wait(self) -> None:
        """Block until a stop is requested, then stop."""
        while not self._stop_requested.wait(1.0):
            pass
        self.stop(graceful=not self._fast_stop)

    def stop(self, graceful: bool = True) -> None:
        """Stop accepting; with ``graceful``, let in-flight requests finish (bounded). Each
        connection's core decides what the stop means for it (see ConnectionCore.stop)."""
        self._stopping = True
        self._stop_requested.set()
        for sock in self._dispatcher.stop_accepting():
            sock.close()
        timeout = self.config.graceful_timeout_seconds
        deadline = time.monotonic() + timeout
        now = time.monotonic()
        for connection in self._snapshot():
            if connection.claim_for_stop(now) or not graceful:
                connection.close()
        while graceful and self._snapshot() and time.monotonic() < deadline:
            time.sleep(SHUTDOWN_POLL_SECONDS)
        self._dispatcher.stop()
        if self._threads.join(max(0.0, deadline - time.monotonic()) if graceful else 0.0):
            self._dispatcher.close()
        elif graceful:
            logger.warning("requests still running after %d s; exiting", timeout)
        self._clock.stop()
        logger.info("fcgigw stopped")

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
        if signal.getsignal(signal.SIGQUIT) is not signal.SIG_IGN:  # a worker ignores it
            signal.signal(signal.SIGQUIT, fast)  # (its default would dump core)
