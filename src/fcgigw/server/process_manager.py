"""How many workers the supervisor keeps (php-fpm's ``pm``): static, dynamic or on demand.

- static (``--workers N``): N, always (TTIN/TTOU still add or remove one).
- dynamic (``--workers-max M``, ``--workers-min 1..M``): another worker starts when every
  worker is busy (serving at least one request, as the scoreboard says), one at a time, up to
  M; a worker idle for ``--worker-idle-timeout`` seconds stops while more than the minimum
  run (but one idle worker stays while others are busy, as a spare).
- on demand (``--workers-min 0``): no worker runs until a connection arrives. The
  supervisor then watches the listening sockets (it never accepts) and starts a worker when
  one is readable; the last idle worker stops like any other, so an idle site costs only
  the supervisor's memory.

This module decides; the supervisor spawns and stops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Config
from .scoreboard import WorkerView

logger = logging.getLogger("fcgigw.supervisor")


@dataclass(frozen=True, slots=True)
class Member:
    """A worker of the current generation as the process manager sees it."""

    pid: int
    ready_at: float  # 0 while it starts
    view: WorkerView | None


class ProcessManager:
    """See the module docstring."""

    def __init__(self, config: Config) -> None:
        self.scaling = config.workers_max > 0
        self.minimum = config.workers_min if self.scaling else config.workers
        self.maximum = config.workers_max if self.scaling else config.workers
        self.idle_timeout = float(config.worker_idle_timeout)
        self.initial = config.workers or self.minimum
        if not self.scaling:
            self.name = "static"
        else:
            self.name = "ondemand" if self.minimum == 0 else "dynamic"

    @property
    def on_demand(self) -> bool:
        return self.scaling and self.minimum == 0

    def wanted(self, target: int, members: list[Member], now: float) -> tuple[int, list[int]]:
        """The new target and the pids of idle workers to stop, from the current members."""
        if not self.scaling or any(not m.ready_at or m.view is None for m in members):
            return target, []  # one starting: wait for it before deciding again
        busy = [m for m in members if m.view is not None and m.view.figures.in_flight]
        if members and len(busy) == len(members) and target < self.maximum:
            logger.info("all %d workers are busy: starting another", len(members))
            return target + 1, []
        # While some are busy, one idle worker stays as a spare: stopping it would only
        # start another at the next busy tick.
        spares = 1 if busy else 0
        idle = [m for m in members if m not in busy]
        retire: list[int] = []
        for member in idle[spares:]:
            if target - len(retire) <= self.minimum:
                break
            assert member.view is not None
            seconds = now - max(member.view.figures.last_active, member.ready_at)
            if seconds >= self.idle_timeout:
                logger.info("worker %d idle for %.0f s: stopping it", member.pid, seconds)
                retire.append(member.pid)
        return target - len(retire), retire

    def connection_waiting(self, target: int) -> int:
        """On demand, with no worker: a listener is readable, so one starts."""
        if target == 0:
            logger.info("a connection is waiting: starting a worker")
            return 1
        return target
