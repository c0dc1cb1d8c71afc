"""The asyncio backend's stop: let each connection's core finish its requests (graceful), or
cancel them at once (fast). It runs once per server, so it stays out of aio.AsyncServer."""

from __future__ import annotations

import asyncio
import logging
import time

from .aio_connection import ConnectionHost

logger = logging.getLogger("fcgigw.server")

#: While stopping, how often to look whether the last requests have finished.
SHUTDOWN_POLL_SECONDS = 0.01


async def finish_requests(
    host: ConnectionHost, tasks: set[asyncio.Task[None]], timeout_seconds: float, *, fast: bool
) -> None:
    """A graceful stop: each connection's core decides (idle ones close now, busy ones
    after their requests, fresh ones get their request served); bounded by
    ``timeout_seconds``, after which what is left is cancelled. ``tasks``: the requests'
    tasks, which leave the set as they end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    if not fast:
        host.stopping = True
        now = time.monotonic()
        for connection in list(host.connections):
            connection.core.stop(now)
            connection.after_core()
        # Each connection closes when its core says so: idle ones now, busy ones after
        # their requests, those with a request on its way once it is served or in time.
        # Look only after a first wait: a connection the loop accepted just before the
        # listener closed is made (and counted) a few callbacks later.
        while True:
            if tasks:
                await asyncio.wait(tasks, timeout=SHUTDOWN_POLL_SECONDS)
            else:
                await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
            if loop.time() >= deadline or not (tasks or host.connections):
                break
        if tasks:
            logger.warning("%d requests still running; exiting", len(tasks))
    for task in list(tasks):
        task.cancel()
    for connection in list(host.connections):
        connection.close()
