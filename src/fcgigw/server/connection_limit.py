"""max_connections: how many connections one process serves at once (reported to the web
server as FCGI_MAX_CONNS, §4.1). Past it a connection is closed at accept, and the refusal is
logged at most every REFUSAL_LOG_INTERVAL_SECONDS, so a flood cannot flood the log too."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("fcgigw.server")

REFUSAL_LOG_INTERVAL_SECONDS = 10.0


class ConnectionLimit:
    """Counts open connections; thread-safe (the threaded server accepts on several)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()
        self._logged_at = -REFUSAL_LOG_INTERVAL_SECONDS

    def admit(self) -> bool:
        """Count a new connection in, or refuse it (the caller closes it)."""
        with self._lock:
            if self.open < self.limit:
                self.open += 1
                return True
            now = time.monotonic()
            log = now - self._logged_at >= REFUSAL_LOG_INTERVAL_SECONDS
            if log:
                self._logged_at = now
        if log:
            logger.warning("refusing connections: %d open (setting max_connections)", self.limit)
        return False

    def release(self) -> None:
        """An admitted connection closed."""
        with self._lock:
            self.open -= 1
