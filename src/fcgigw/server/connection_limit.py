"""Who may hold a connection: the peer allowlist (FCGI_WEB_SERVER_ADDRS, §3.2) and
max_connections, how many connections one process serves at once (reported to the web server
as FCGI_MAX_CONNS, §4.1). Past the limit a connection is closed at accept, and the refusal is
logged at most every REFUSAL_LOG_INTERVAL_SECONDS, so a flood cannot flood the log too."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Final

from ..config import Config
from .peers import PeerAllowlist

logger = logging.getLogger("fcgigw.server")

REFUSAL_LOG_INTERVAL_SECONDS: Final = 10.0


class ConnectionLimit:
    """Counts open connections; thread-safe (the threaded server accepts on several)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.accepted = 0  # connections admitted since the start (the scoreboard reads it)
        self._lock = threading.Lock()
        self._logged_at = -REFUSAL_LOG_INTERVAL_SECONDS

    def admit(self) -> bool:
        """Count a new connection in, or refuse it (the caller closes it)."""
        with self._lock:
            if self.open < self.limit:
                self.open += 1
                self.accepted += 1
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


class Admission:
    """The one check every backend makes on a new connection: allowed peer, room left."""

    def __init__(self, config: Config) -> None:
        self.allowlist = PeerAllowlist(config.allow_from)
        self.limit = ConnectionLimit(config.max_connections)

    def admit(self, family: int, address: object) -> bool:
        """True: serve the connection (and release() when it closes); False: close it."""
        if family != socket.AF_UNIX and not self.allowlist.allows(family, address):
            host = address[0] if isinstance(address, tuple) else address
            logger.warning("refused connection from %s: not in --allow-from", host)
            return False
        return self.limit.admit()

    def release(self) -> None:
        self.limit.release()


def peer_name(family: int, address: object) -> str:
    """How logs name a peer."""
    if family == socket.AF_UNIX:
        return "unix"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)
