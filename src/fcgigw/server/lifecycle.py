"""What both backends (threaded WSGI, asyncio ASGI) share about a process's life: the
max_requests budget after which it stops to be replaced, and what a finished request leaves
(the access log line, the budget spent, the count of served requests)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Final

from ..config import Config
from .logs import Logged, log_access

logger = logging.getLogger("fcgigw.server")

#: How often each backend runs the connection cores' deadlines (ConnectionCore.tick): the
#: precision of every timeout, which are whole seconds anyway (nginx checks its own every few
#: hundred milliseconds), and of the quiet wait before a held END_REQUEST.
TICK_SECONDS: Final = 0.25


class RequestBudget:
    """--max-requests: requests this process serves before it stops to be replaced, with
    jitter so that workers started together do not all restart together."""

    def __init__(self, config: Config) -> None:
        self.left: int | None = None
        if config.max_requests:
            jitter = random.randint(0, config.max_requests_jitter)  # noqa: S311
            self.left = config.max_requests + jitter

    def spend(self) -> bool:
        """Count one served request; True once the budget is used up (logged then). Races
        between threads only make the count approximate."""
        if self.left is None:
            return False
        self.left -= 1
        if self.left != 0:
            return False
        logger.info("served max_requests: stopping to be replaced")
        return True


class RequestEnd:
    """After each request: the access log line, and the budget (stopping when it is spent)."""

    def __init__(self, config: Config, request_stop: Callable[[], None]) -> None:
        self._access_log = config.access_log
        self._budget = RequestBudget(config)
        self._request_stop = request_stop
        #: Requests finished in this process (the scoreboard reads it). The threads add to it
        #: without a lock: CPython switches threads at calls and backward jumps, not between
        #: the read and the write of ``+= 1``.
        self.served = 0

    def __call__(self, request: Logged) -> None:
        self.served += 1
        if self._access_log:
            log_access(request)
        if self._budget.left is not None and self._budget.spend():
            self._request_stop()
