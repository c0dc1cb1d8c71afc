"""What both servers (threaded WSGI, asyncio ASGI) share about a request's and a process's
life: how long to wait for a body that went quiet or a request that was on its way, and the
max_requests budget after which a process stops to be replaced."""

from __future__ import annotations

import logging
import random

from ..config import Config

logger = logging.getLogger("fcgigw.server")

#: After the response, how long the web server's body may pause before END_REQUEST goes out
#: without the rest of it. h2o 2.2 aborts if it comes while the body is still being sent;
#: nginx stops sending the body once answered (possibly mid-record) and waits for it.
INPUT_QUIET_SECONDS = 0.3
#: During a graceful stop, how long a just-accepted connection may take to send its request.
FIRST_RECORD_WAIT_SECONDS = 1.0


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
