"""What one serving process tells the scoreboard about itself, every clock tick.

Both backends call ``Monitor.tick`` from the clock they already run (the threaded server's
clock thread, the asyncio sweep) with their connections; the requests in flight are read
from the connection cores, so nothing is recorded per request but the two counters the
server keeps anyway (accepted connections in Admission, served requests in RequestEnd).
A process without a monitor (the default: no status page, no supervisor that needs one)
pays nothing at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol

from ..config import Config
from .connection_limit import Admission
from .core import ConnectionCore, CoreRequest
from .lifecycle import RequestEnd
from .scoreboard import NO_RECYCLE, Figures, Seat

_DESCRIBED = (b"REQUEST_METHOD", b"REQUEST_URI", b"SCRIPT_NAME", b"PATH_INFO", b"QUERY_STRING")


class HasCore(Protocol):
    """A connection of either backend."""

    core: ConnectionCore


def describe(params: Iterable[tuple[bytes, bytes]]) -> tuple[str, str]:
    """A request's method and URI, from its params (REQUEST_URI, else the CGI pieces)."""
    found: dict[bytes, bytes] = {}
    for name, value in params:
        if name in _DESCRIBED:
            found.setdefault(name, value)
    uri = found.get(b"REQUEST_URI")
    if uri is None:
        uri = found.get(b"SCRIPT_NAME", b"") + found.get(b"PATH_INFO", b"")
        if found.get(b"QUERY_STRING"):
            uri += b"?" + found[b"QUERY_STRING"]
    return found.get(b"REQUEST_METHOD", b"-").decode("latin-1"), uri.decode("latin-1")


def running_requests(connections: Iterable[HasCore]) -> list[CoreRequest]:
    """The requests whose app has not finished, on every connection. The threaded clock reads
    the cores without their locks: copying a dict's values is one step under the GIL."""
    running: list[CoreRequest] = []
    for connection in connections:
        try:
            requests = tuple(connection.core.requests.values())
        except (AttributeError, RuntimeError):  # not admitted; or changed while copied
            continue
        running.extend(request for request in requests if not request.finished)
    return running


def standalone_seat(config: Config) -> Seat | None:
    """The scoreboard of a process without a supervisor, when a feature reads it."""
    return Seat.alone() if config.status_path else None


class Monitor:
    """Publishes this process's figures to its scoreboard slot."""

    def __init__(
        self, config: Config, seat: Seat, admission: Admission, request_end: RequestEnd
    ) -> None:
        self.config = config
        self.seat = seat
        #: Without a supervisor this process keeps the scoreboard's header too.
        self.alone = seat.board.header().supervisor_pid == os.getpid()
        self._admission = admission
        self._request_end = request_end
        self._last_served = 0
        self._last_active = 0.0
        self._busy_seen = False
        self.recycle = NO_RECYCLE

    def tick(self, connections: Iterable[HasCore], now: float) -> None:
        """One clock tick: publish the figures."""
        running = running_requests(connections)
        self.publish(running, now)

    def publish(self, running: list[CoreRequest], now: float) -> None:
        served = self._request_end.served
        if running or served != self._last_served or not self._last_active:
            self._last_active = now
            self._last_served = served
        oldest = min(running, key=_started_at) if running else None
        method, uri = describe(oldest.params) if oldest is not None else ("", "")
        self.seat.publish(
            Figures(
                heartbeat=now,
                last_active=self._last_active,
                in_flight=len(running),
                accepted=self._admission.limit.accepted,
                served=served,
                slow=self.slow_count,
                recycle=self.recycle,
                request_started=oldest.started_at if oldest is not None else 0.0,
                method=method,
                uri=uri,
            )
        )
        if self.alone and running and not self._busy_seen:
            self._busy_seen = True
            self.seat.board.count(max_busy=1)

    @property
    def slow_count(self) -> int:
        return 0


def _started_at(request: CoreRequest) -> float:
    return request.started_at


def make_monitor(
    config: Config, seat: Seat | None, admission: Admission, request_end: RequestEnd
) -> Monitor | None:
    """The process's monitor, or None when no feature needs one."""
    return None if seat is None else Monitor(config, seat, admission, request_end)
