"""The ASGI lifespan protocol: startup before serving, shutdown on stop.

Per the ASGI lifespan spec, an app that raises on the lifespan scope (Django's handler does)
does not support it: log at debug level and serve without lifespan, unless --lifespan on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .asgi import ASGI_VERSION, ASGIApp, Message

logger = logging.getLogger("fcgigw.lifespan")


class LifespanFailure(Exception):
    """Startup or shutdown failed; the message is for the operator."""


class Lifespan:
    """Runs the app's lifespan task; ``state`` is copied into every request scope."""

    def __init__(self, app: ASGIApp, mode: str = "auto") -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = False
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Run the app's startup; raise LifespanFailure if it reports failure."""
        if self.mode == "off":
            return
        scope = {"type": "lifespan", "asgi": dict(ASGI_VERSION), "state": self.state}
        self._task = asyncio.create_task(self._run(scope))
        await self._events.put({"type": "lifespan.startup"})
        reply = await self._replies.get()
        if reply["type"] == "lifespan.startup.complete":
            self.supported = True
            return
        if reply["type"] == "lifespan.startup.failed":
            raise LifespanFailure(f"application startup failed: {reply.get('message', '')}")
        # The app raised or returned: it does not support lifespan.
        if self.mode == "on":
            raise LifespanFailure("application does not support lifespan (--lifespan on)")

    async def shutdown(self) -> None:
        """Run the app's shutdown (only when startup completed)."""
        if not self.supported:
            return
        await self._events.put({"type": "lifespan.shutdown"})
        reply = await self._replies.get()
        if reply["type"] == "lifespan.shutdown.failed":
            logger.error("application shutdown failed: %s", reply.get("message", ""))
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._events.get, self._reply)
        except Exception as error:
            if self.mode == "on" or self.supported:
                logger.error("lifespan task failed", exc_info=error)
            else:
                logger.debug("the application does not support lifespan: %r", error)
        finally:
            # Whatever the app did, whoever waits on a reply gets one.
            await self._replies.put({"type": "lifespan.ended"})

    async def _reply(self, message: Message) -> None:
        await self._replies.put(message)
