"""Turns on a connection that several threads share (thread_connection): one lock, and a
Condition over it for whoever has to wait for a turn, made the first time someone has to
(most connections never do)."""

from __future__ import annotations

import threading


class Turns:
    """``lock`` guards the connection; ``wait`` sleeps until a turn is given back, ``wake``
    wakes the sleepers. Both are called with ``lock`` held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._turn: threading.Condition | None = None
        self._waiting = 0

    def wait(self) -> None:
        """Sleep until a turn is given back (the caller holds ``lock``)."""
        if self._turn is None:
            self._turn = threading.Condition(self.lock)
        self._waiting += 1
        try:
            self._turn.wait()
        finally:
            self._waiting -= 1

    def wake(self) -> None:
        """Wake whoever waits for a turn (the caller holds ``lock``)."""
        if self._waiting and self._turn is not None:
            self._turn.notify_all()

    def wake_readers(self) -> None:
        """wake(), from a thread that does not hold the lock (the clock, after a 504)."""
        with self.lock:
            self.wake()
