"""What the supervisor reads from the scoreboard each tick, and what it decides from it: the
pool's "max busy reached", which workers to replace (recycling.py), and how many workers the
process manager wants (process_manager.py). It decides; the supervisor spawns and stops."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from ..config import Config
from .monitor import supervisor_needs_scoreboard
from .process_manager import Member, ProcessManager
from .recycling import Recycler
from .scoreboard import NO_RECYCLE, RECYCLE_MEMORY, RECYCLE_REASONS, Scoreboard, WorkerView

logger = logging.getLogger("fcgigw.supervisor")


class Watched(Protocol):
    """A worker as the supervisor tracks it (supervisor.Worker)."""

    pid: int
    slot: int | None
    ready: bool
    ready_at: float
    stopping: bool
    replacing: bool


@dataclass
class Decision:
    """What the supervisor does after a look at the scoreboard."""

    target: int
    stop: list[int] = field(default_factory=list)  # idle workers, by pid
    replace: list[int] = field(default_factory=list)  # stuck or too big, by pid


def make_scoreboard(config: Config, manager: ProcessManager) -> Scoreboard | None:
    """The pool's scoreboard, made before the first fork, when a feature reads it. Its slots
    leave room for a reload (two generations at once) and for TTIN."""
    if not supervisor_needs_scoreboard(config):
        return None
    bounds = (manager.minimum, manager.maximum)
    board = Scoreboard(max(16, 4 * manager.maximum), manager.name, bounds)
    board.write_header(replace(board.header(), supervisor_pid=os.getpid()))
    return board


class PoolWatch:
    """See the module docstring."""

    def __init__(self, board: Scoreboard, config: Config, manager: ProcessManager) -> None:
        self.board = board
        self.manager = manager
        self.recycler = Recycler(config)

    def decide(
        self, workers: Sequence[Watched], current: Sequence[Watched], target: int, now: float
    ) -> Decision:
        """``workers``: all of them; ``current``: those the pool counts (the current
        generation, neither stopping nor being replaced)."""
        board = self.board
        views = {view.index: view for view in board.workers()}
        busy = sum(1 for view in views.values() if view.figures.in_flight)
        if busy > board.header().max_busy:
            board.count(max_busy=busy)
        decision = self._scale(current, views, target, now)
        for worker in workers:
            view = views.get(worker.slot) if worker.slot is not None else None
            if view is None or not worker.ready or worker.stopping or worker.replacing:
                continue
            reason, detail = self.recycler.verdict(view, now, worker.ready_at)
            if reason != NO_RECYCLE:
                self._replacing(worker.pid, reason, detail)
                decision.replace.append(worker.pid)
        return decision

    def _scale(
        self, current: Sequence[Watched], views: dict[int, WorkerView], target: int, now: float
    ) -> Decision:
        if len(current) != target:
            return Decision(target)  # spawning (or backing off): decide once it is whole
        members = [
            Member(
                w.pid,
                w.ready_at if w.ready else 0.0,
                views.get(w.slot) if w.slot is not None else None,
            )
            for w in current
        ]
        wanted, retire = self.manager.wanted(target, members, now)
        return Decision(wanted, stop=retire)

    def _replacing(self, pid: int, reason: int, detail: str) -> None:
        logger.warning("replacing worker %d (%s): %s", pid, RECYCLE_REASONS[reason], detail)
        if reason == RECYCLE_MEMORY:
            self.board.count(recycled_memory=1)
        else:
            self.board.count(recycled_stuck=1)
