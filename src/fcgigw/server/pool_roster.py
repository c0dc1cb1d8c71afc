"""What the pool master wants running: each pool's settings, its newest child, the pools that
cannot start (until a SIGHUP), and when a pool whose child died may start again."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ..config_file import Pool
from .forked import Backoff
from .pool_child import Child


class Roster:
    """The master's record of its pools, by name; the master forks and stops."""

    def __init__(
        self, pools: Mapping[str, Pool], delays: tuple[float, float], stable_after: float
    ) -> None:
        self.wanted: dict[str, Pool] = dict(pools)
        self.current: dict[str, Child] = {}
        self.failed: dict[str, int] = {}
        self._restarts: dict[str, Backoff] = {}
        self._delays = delays
        self._stable_after = stable_after

    def forget(self, name: str) -> None:
        """The pool was removed or changed: nothing of it is kept."""
        self.wanted.pop(name, None)
        self.current.pop(name, None)
        self.failed.pop(name, None)
        self._restarts.pop(name, None)

    def started(self, child: Child) -> None:
        """``child`` is its pool's newest; its restart delay is kept for its next death."""
        name = child.pool.name
        self.current[name] = child
        self.failed.pop(name, None)
        if name in self._restarts:
            self._restarts[name].due = 0.0

    def died(self, name: str, started_at: float) -> None:
        """The pool's child started at ``started_at`` died (or it could not bind): it waits."""
        restart = self._restarts.setdefault(name, Backoff(self._delays, self._stable_after))
        restart.died(started_at)

    def serving(self) -> list[str]:
        """The pools whose newest child serves, by name."""
        return sorted(name for name, child in self.current.items() if child.ready)

    def next_due(self) -> float | None:
        """When the first pool that waits may start, if one waits."""
        return min((r.due for r in self._restarts.values() if r.due), default=None)

    def due(self) -> list[Pool]:
        """The pools with no child that may start now (not those that cannot start)."""
        now = time.monotonic()
        return [
            pool
            for name, pool in self.wanted.items()
            if name not in self.current
            and name not in self.failed
            and (name not in self._restarts or self._restarts[name].due <= now)
        ]
