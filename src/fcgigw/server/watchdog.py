"""Deadlines for the threaded server: a peer that never completes its PARAMS, an idle kept
connection, a request that runs too long. One thread checks them all, so the hot path only
sets and clears a dict entry, and a blocked recv() or app never has to poll the clock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

logger = logging.getLogger("fcgigw.server")

#: How often the deadlines are checked: the precision of every timeout.
TICK_SECONDS = 0.25


class Watchdog:
    """Calls ``on_expiry`` for each key whose deadline has passed (once, from its thread)."""

    def __init__(self) -> None:
        self._deadlines: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fcgigw-watchdog", daemon=True)
        self._started = False

    def set(self, key: Hashable, seconds: float, on_expiry: Callable[[], None]) -> None:
        """(Re)arm ``key`` to expire ``seconds`` from now; 0 or less disarms it."""
        if seconds <= 0:
            self.clear(key)
            return
        with self._lock:
            self._deadlines[key] = (time.monotonic() + seconds, on_expiry)
            if not self._started:
                self._started = True
                self._thread.start()

    def clear(self, key: Hashable) -> None:
        with self._lock:
            self._deadlines.pop(key, None)

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(TICK_SECONDS):
            now = time.monotonic()
            with self._lock:
                expired = [key for key, (at, _) in self._deadlines.items() if at <= now]
                actions = [self._deadlines.pop(key)[1] for key in expired]
            for action in actions:
                try:
                    action()
                except Exception:
                    logger.exception("error while enforcing a timeout")
