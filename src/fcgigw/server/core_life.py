"""A connection's own life, apart from its requests: when it closes for want of one.

Three deadlines, one at a time: the header deadline (a request's PARAMS must come in time),
the idle deadline between requests on a kept connection (§3.5: the web server keeps it), and
during a graceful stop the wait for a request already on its way. Free of I/O, like the core
that owns it (core.ConnectionCore); the requests' own deadlines are core_requests'.
"""

from __future__ import annotations

import logging
from typing import Final

from .core_request import NEVER

logger = logging.getLogger("fcgigw.server")

#: During a graceful stop, how long a just-accepted connection may take to send its request
#: (closing it at once failed requests during reloads under load).
FIRST_RECORD_WAIT_SECONDS: Final = 1.0

_HEADER: Final = "header_timeout_seconds"
_IDLE: Final = "idle_timeout_seconds"
_GRACEFUL_STOP: Final = "graceful stop"


class ConnectionLife:
    """The connection's deadline and what it is for; whether it has received anything yet
    (``fresh``) and whether a graceful stop has begun (``stopping``)."""

    __slots__ = ("_header_seconds", "_idle_seconds", "at", "fresh", "setting", "stopping")

    def __init__(self, header_seconds: int, idle_seconds: int, now: float) -> None:
        self._header_seconds = header_seconds
        self._idle_seconds = idle_seconds
        #: Nothing received yet: accepted, its web server's first records still on the way.
        self.fresh = True
        self.stopping = False
        #: What the deadline is for (a setting's name, or the stop's wait) and when it is.
        self.setting = ""
        self.at = NEVER
        self._arm(_HEADER, header_seconds, now)

    def _arm(self, setting: str, seconds: float, now: float) -> None:
        self.setting = setting
        self.at = now + seconds if seconds > 0 else NEVER

    def received(self, data: bytes, now: float) -> None:
        """Bytes came (b"": the peer closed)."""
        if data and self.setting == _IDLE:
            # The first bytes of a request after an idle spell: its PARAMS must come in time.
            self._arm(_HEADER, self._header_seconds, now)
        self.fresh = False

    def request_started(self) -> None:
        """A request's PARAMS are whole: no header deadline now."""
        self.at = NEVER

    def no_request_running(self, now: float, partial_request: bool) -> bool:
        """No request runs now; True: close the connection (a stop, nothing on its way).
        Otherwise it waits, idle, for the next one."""
        if self.stopping:
            if not self.fresh and not partial_request:
                return True
            if self.setting != _GRACEFUL_STOP:
                # A request on its way when the last one ended: it gets its own wait.
                self.setting = _GRACEFUL_STOP
                self.at = now + FIRST_RECORD_WAIT_SECONDS
        elif not self.fresh and self.setting != _IDLE and not partial_request:
            # (Part of the next request has come: its header deadline runs on.)
            self._arm(_IDLE, self._idle_seconds, now)
        return False

    def stop(self, now: float, requests_running: bool, partial_request: bool) -> bool:
        """A graceful stop begins; True: close now (idle). A busy connection closes after its
        requests; one accepted just before the stop, or with a request on its way, gets
        FIRST_RECORD_WAIT_SECONDS for that request, which is served."""
        self.stopping = True
        if self.fresh or (not requests_running and partial_request):
            self.setting = _GRACEFUL_STOP
            self.at = min(self.at, now + FIRST_RECORD_WAIT_SECONDS)
            return False
        return not requests_running

    def log_expiry(self, peer: str) -> None:
        if self.setting == _GRACEFUL_STOP:
            logger.info("closing connection from %s: no request during the stop", peer)
            return
        idle = self.setting == _IDLE
        logger.info(
            "closing connection from %s: it %s for %d s (setting %s)",
            peer,
            "was idle" if idle else "sent no complete request",
            self._idle_seconds if idle else self._header_seconds,
            self.setting,
        )
