"""Which workers the supervisor replaces, read from the scoreboard (uWSGI's harakiri and
reload-on-rss, php-fpm's request_terminate_timeout):

- a worker that asked for it: one of its requests passed request_timeout_seconds and still
  holds its thread (WSGI), or ignored its cancellation (ASGI);
- a worker whose clock has not published for request_timeout_seconds (plus a margin): its
  event loop or its whole interpreter is blocked, so it cannot even ask;
- a worker whose RSS passed max_worker_memory.

A replaced worker keeps serving until its replacement serves, then stops gracefully: the
pool never runs below its size.
"""

from __future__ import annotations

import os

from ..config import Config
from .scoreboard import NO_RECYCLE, RECYCLE_MEMORY, RECYCLE_STUCK, WorkerView

MIB = 1024 * 1024
#: Beyond request_timeout_seconds, how long a worker may go without publishing before it
#: counts as blocked (its clock ticks every lifecycle.TICK_SECONDS).
SILENCE_MARGIN_SECONDS = 2.0
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class Recycler:
    """Decides, each supervisor tick, whether a serving worker must be replaced."""

    def __init__(self, config: Config) -> None:
        self.memory_limit = config.max_worker_memory * MIB
        timeout = config.request_timeout_seconds
        self.silence_limit = timeout + SILENCE_MARGIN_SECONDS if timeout else 0.0

    def verdict(self, view: WorkerView, now: float, ready_at: float) -> tuple[int, str]:
        """(RECYCLE_* reason, what to log) for a worker serving since ``ready_at``;
        NO_RECYCLE to keep it."""
        figures = view.figures
        if figures.recycle != NO_RECYCLE:
            return figures.recycle, "a request ran past request_timeout_seconds and holds it"
        # Silence counts from its readiness at the earliest: a worker may be blocked before
        # its clock's first tick, or have had a long lifespan startup.
        silent = now - max(figures.heartbeat, ready_at)
        if self.silence_limit and silent > self.silence_limit:
            return RECYCLE_STUCK, f"it has not ticked for {silent:.0f} s (blocked)"
        if self.memory_limit:
            rss = rss_bytes(view.pid)
            if rss is not None and rss > self.memory_limit:
                limit = self.memory_limit // MIB
                return RECYCLE_MEMORY, f"RSS {rss // MIB} MiB (setting max_worker_memory {limit})"
        return NO_RECYCLE, ""
