"""Which pool thread may lead (wait in the poller) next: the Dispatcher's admission.

Threads contending for the GIL cost more than they give when the app is CPU-bound (measured
behind nginx: 1 thread 11.0k req/s, 2 threads 8.3k, 4 threads 4.5k). So another thread is
admitted to serve only when every serving thread has been busy for ADMIT_AFTER_SECONDS, i.e.
when the app is waiting on I/O; a fast app is served by one thread, a slow one by many.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sized
from typing import Final

#: How long every serving thread must have been busy before another thread may serve too.
ADMIT_AFTER_SECONDS: Final = 0.002
#: How often the waiting poller looks when nobody is serving (an idle server stays quiet).
IDLE_POLL_SECONDS: Final = 0.05

_get_ident: Final = threading.get_ident
_monotonic: Final = time.monotonic


class LeaderAdmission:
    """Admits one leader at a time, and another serving thread only when all who serve have
    been at it for ADMIT_AFTER_SECONDS.

    The leader hands the leadership back inline (Dispatcher.next_work: under ``lock``, clear
    ``leader_taken`` and record itself in ``serving``), not through a method: that is a
    Python call saved per request on the hot path."""

    def __init__(self, ready: Sized) -> None:
        #: Taken directly on the fast path (a C-level lock, no Condition method call per use).
        self.lock = threading.Lock()
        self._changed = threading.Condition(self.lock)
        #: Thread id -> when it began its current work.
        self.serving: dict[int, float] = {}
        self.leader_taken = False
        #: Set once: let the threads go when no work is queued (``ready``, the work queue).
        self.stopping = False
        self._ready = ready
        self._poller_waiting = False

    def at_once(self, finished: bool) -> bool:
        """The usual case, in one lock round: nobody leads, and nobody else serves (or they
        all have been at it for ADMIT_AFTER_SECONDS). False: wait() decides, waiting.
        ``finished``: the caller has just finished its previous work."""
        with self.lock:
            serving = self.serving
            if finished:
                serving.pop(_get_ident(), None)
            if self.leader_taken or (self.stopping and not self._ready):
                return False
            if serving and _monotonic() - max(serving.values()) < ADMIT_AFTER_SECONDS:
                return False
            self.leader_taken = True
            return True

    def wait(self) -> bool:
        """Wait until this thread may lead: nobody leads, and nobody is serving or all who
        serve have been at it for ADMIT_AFTER_SECONDS. One waiter polls; the rest sleep.
        False: stopped, and no work is left."""
        changed = self._changed
        with changed:
            polling = False
            while True:
                if self.stopping and not self._ready:
                    changed.notify_all()
                    return False
                now = _monotonic()
                newest = max(self.serving.values(), default=None)
                long_running = newest is not None and now - newest >= ADMIT_AFTER_SECONDS
                if not self.leader_taken and (newest is None or long_running):
                    break
                if polling or not self._poller_waiting:
                    polling = self._poller_waiting = True
                    changed.wait(_poll_interval(now, newest))
                else:
                    changed.wait()
            self.leader_taken = True
            if polling:
                self._poller_waiting = False
                changed.notify()  # another waiter takes over the polling
            return True

    def stop(self) -> None:
        """Admit no one once the queued work is done; wake every waiter to see it."""
        with self._changed:
            self.stopping = True
            self._changed.notify_all()


def _poll_interval(now: float, newest: float | None) -> float:
    """When the admission poller should look again."""
    if newest is None:
        return IDLE_POLL_SECONDS
    age = now - newest
    return ADMIT_AFTER_SECONDS if age >= ADMIT_AFTER_SECONDS else ADMIT_AFTER_SECONDS - age
