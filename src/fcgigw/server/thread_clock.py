"""The threaded backend's clock: one thread that runs every connection's deadlines.

Every TICK_SECONDS it ticks each connection's core (504s for requests past the request
timeout), has the pool watch a connection whose owner has been in the app for
WATCH_AFTER_SECONDS (records that come meanwhile, a multiplexed request or an ABORT_REQUEST,
§3.3, are then read by another thread), and reports to the monitor.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Final

from ..adapters.response import timed_out
from .core import CoreRequest
from .lifecycle import TICK_SECONDS
from .monitor import Monitor
from .thread_channel import ThreadChannel
from .thread_connection import ThreadedConnection

logger = logging.getLogger("fcgigw.server")

#: A request running inline this long has the pool watch its connection.
WATCH_AFTER_SECONDS: Final = 0.2


class ThreadClock:
    """The clock thread of a Server; ``connections`` gives a snapshot, ``park`` hands a
    connection to the pool's poller."""

    def __init__(
        self,
        connections: Callable[[], list[ThreadedConnection]],
        park: Callable[[ThreadedConnection], None],
        request_timeout_seconds: int,
        monitor: Monitor | None,
    ) -> None:
        self._connections = connections
        self._park = park
        self._request_timeout_seconds = request_timeout_seconds
        self._monitor = monitor
        self._stopped = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="fcgigw-clock", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(TICK_SECONDS):
            now = time.monotonic()
            connections = self._connections()
            for connection in connections:
                try:
                    self._visit(connection, now)
                except Exception:
                    logger.exception("error while enforcing a timeout")
            if self._monitor is not None:
                self._monitor.tick(connections, now)

    def _visit(self, connection: ThreadedConnection, now: float) -> None:
        monitor = self._monitor
        for request in _run_deadlines(connection, now):
            channel = request.handler
            assert isinstance(channel, ThreadChannel)
            if monitor is not None and monitor.replaced_when_stuck:
                consequence = "its worker will be replaced"
            else:
                consequence = "its thread stays busy until the app returns"
            seconds = self._request_timeout_seconds
            timed_out(channel, seconds, consequence, headers_sent=request.bytes_sent > 0)
            connection.wake_readers()  # an app waiting for its body sees the abort
            if monitor is not None:
                monitor.request_stuck()
        with connection.lock:
            since = connection.inline_since
            watch = since and now - since >= WATCH_AFTER_SECONDS and not connection.watched
            watch = watch and not connection.closed
            if watch:
                connection.watched = True
                self._park(connection)


def _run_deadlines(connection: ThreadedConnection, now: float) -> list[CoreRequest]:
    """Run the connection core's deadlines that ``now`` has passed; wake the owner if the
    connection must close. The requests past the request timeout are returned (a 504 each)."""
    with connection.lock:
        core = connection.core
        if connection.closed or now < core.next_deadline:
            return []
        expired = core.tick(now)
        close = core.should_close
    connection.writer.flush(connection)
    if close:
        connection.shutdown(socket.SHUT_RDWR)  # the owner (or the poller) sees EOF and closes
    return expired
