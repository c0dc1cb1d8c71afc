"""What one serving process tells the scoreboard about itself, every clock tick.

Both backends call ``Monitor.tick`` from the clock they already run (the threaded server's
clock thread, the asyncio sweep) with their connections; the requests in flight are read
from the connection cores, so nothing is recorded per request but the two counters the
server keeps anyway (accepted connections in Admission, served requests in RequestEnd).
A process without a monitor (the default: no status page, no supervisor that needs one)
pays nothing at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from typing import Protocol

from ..config import Config
from .connection_limit import Admission
from .core import ConnectionCore, CoreRequest
from .lifecycle import RequestEnd
from .scoreboard import NO_RECYCLE, RECYCLE_STUCK, Figures, Seat
from .slowlog import SlowLog, describe

logger = logging.getLogger("fcgigw.server")


class HasCore(Protocol):
    """A connection of either backend."""

    core: ConnectionCore


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


def supervisor_needs_scoreboard(config: Config) -> bool:
    """Whether a supervisor maps a scoreboard for its workers."""
    return bool(
        config.status_path
        or config.slow_request_timeout
        or config.request_timeout_seconds
        or config.max_worker_memory
        or config.workers_max
    )


def standalone_seat(config: Config) -> Seat | None:
    """The scoreboard of a process without a supervisor, when a feature reads it."""
    return Seat.alone() if config.status_path or config.slow_request_timeout else None


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
        self._cancelled: list[asyncio.Task[None]] = []
        self.slow: SlowLog | None = None
        if config.slow_request_timeout:
            self.slow = SlowLog(config.slow_request_timeout, config.slow_log)

    def tick(self, connections: Iterable[HasCore], now: float) -> None:
        """One clock tick: the slow log, then publish the figures. Never raises: the
        clock that calls it also runs every timeout."""
        try:
            running = running_requests(connections)
            if self._cancelled:
                self._check_cancelled()
            if self.slow is not None:
                self.slow.check(running, now)
            self.publish(running, now)
        except Exception:
            logger.exception("error while reporting to the scoreboard")

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
    def replaced_when_stuck(self) -> bool:
        """A supervisor replaces this worker when a request is stuck in it."""
        return not self.alone

    def request_stuck(self) -> None:
        """A request passed request_timeout_seconds and still holds its thread (or task):
        ask the supervisor for a replacement (published on this tick)."""
        if self.alone or self.recycle != NO_RECYCLE:
            return
        self.recycle = RECYCLE_STUCK
        logger.warning(
            "worker %d asks to be replaced: a request is stuck past request_timeout_seconds",
            os.getpid(),
        )

    def cancelled(self, task: asyncio.Task[None]) -> None:
        """An ASGI request was cancelled at its timeout: stuck if it is still running on the
        next tick (the app ignored the cancellation)."""
        self._cancelled.append(task)

    def _check_cancelled(self) -> None:
        if any(not task.done() for task in self._cancelled):
            self.request_stuck()
        self._cancelled.clear()

    @property
    def slow_count(self) -> int:
        return self.slow.count if self.slow is not None else 0


def _started_at(request: CoreRequest) -> float:
    return request.started_at


def make_monitor(
    config: Config, seat: Seat | None, admission: Admission, request_end: RequestEnd
) -> Monitor | None:
    """The process's monitor, or None when no feature needs one."""
    return None if seat is None else Monitor(config, seat, admission, request_end)
