"""The status and ping pages (--status-path, --ping-path), answered by fcgigw before the app.

A request is for one of them when its SCRIPT_NAME + PATH_INFO, or its DOCUMENT_URI (nginx's
$document_uri), is that path, read from the raw params, the same way for WSGI and ASGI. Only
connections the allowlist admitted get this far, as for any request; the web server's own
``allow``/``deny`` is the second gate (see the README's "Operations").

The status covers the whole pool: it is read from the scoreboard every worker publishes to,
so whichever worker answers tells the same story. Formats: php-fpm-like text by default,
``?json``, and ``?openmetrics`` (status_format.py).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..config import Config
from .backlog import listen_queue
from .listeners import describe
from .recycling import rss_bytes
from .scoreboard import PHASES, RECYCLE_REASONS, SERVING, STARTING, STOPPING, Scoreboard
from .status_format import FORMATS
from .status_model import ListenerStatus, PoolStatus, WorkerStatus

Answer = tuple[str, list[tuple[str, str]], bytes]
_NO_CACHE = ("Cache-Control", "no-store")


def _worker_state(phase: int, in_flight: int) -> str:
    if phase == SERVING:
        return "busy" if in_flight else "idle"
    return PHASES[phase]


def pool_status(config: Config, board: Scoreboard, listeners: list[socket.socket]) -> PoolStatus:
    """Everything the status page shows, read now."""
    header = board.header()
    now = time.monotonic()
    workers: list[WorkerStatus] = []
    for view in board.workers():
        figures = view.figures
        started = figures.request_started
        workers.append(
            WorkerStatus(
                pid=view.pid,
                state=_worker_state(view.phase, figures.in_flight),
                generation=view.generation,
                started=view.started,
                requests_served=figures.served,
                in_flight=figures.in_flight,
                rss_bytes=rss_bytes(view.pid) if view.pid else None,
                method=figures.method if started else "",
                uri=figures.uri if started else "",
                request_age=max(0.0, now - started) if started else None,
                recycle=RECYCLE_REASONS.get(figures.recycle, ""),
            )
        )
    counted = [w for w in workers if w.state not in (PHASES[STARTING], PHASES[STOPPING])]
    views = board.workers()
    busy = sum(1 for w in counted if w.state == "busy")
    return PoolStatus(
        pool=config.app or "-",
        process_manager=header.process_manager,
        started=header.started,
        uptime=max(0.0, time.time() - header.started),
        accepted=header.retired_accepted + sum(v.figures.accepted for v in views),
        served=header.retired_served + sum(v.figures.served for v in views),
        in_flight=sum(w.in_flight for w in workers),
        slow=header.retired_slow + sum(v.figures.slow for v in views),
        total=len(workers),
        busy=busy,
        idle=len(counted) - busy,
        max_busy=max(header.max_busy, busy),
        recycled_stuck=header.recycled_stuck,
        recycled_memory=header.recycled_memory,
        listeners=[
            ListenerStatus(describe(s), *(listen_queue(s) or (None, None))) for s in listeners
        ],
        workers=workers,
    )


class StatusPages:
    """Decides whether a request is for the status or ping page, and answers it."""

    def __init__(
        self, config: Config, board: Scoreboard | None, listeners: list[socket.socket]
    ) -> None:
        self.config = config
        self.board = board
        self.listeners = listeners
        self.status_path = config.status_path.encode("latin-1")
        self.ping_path = config.ping_path.encode("latin-1")

    def answer(self, params: Iterable[tuple[bytes, bytes]]) -> Answer | None:
        """The response for a status or ping request; None for every other request."""
        script = path_info = document = query = b""
        for name, value in params:
            if name == b"SCRIPT_NAME":
                script = value
            elif name == b"PATH_INFO":
                path_info = value
            elif name == b"DOCUMENT_URI":
                document = value
            elif name == b"QUERY_STRING":
                query = value
        full = script + path_info
        if self.ping_path and self.ping_path in (full, document):
            return "200 OK", [("Content-Type", "text/plain"), _NO_CACHE], b"pong\n"
        if self.status_path and self.status_path in (full, document) and self.board:
            return self._status(self.board, query.decode("latin-1"))
        return None

    def _status(self, board: Scoreboard, query: str) -> Answer:
        words = {part.partition("=")[0] for part in query.split("&")}
        name = next((word for word in ("json", "openmetrics") if word in words), "text")
        content_type, render = FORMATS[name]
        body = render(pool_status(self.config, board, self.listeners))
        return "200 OK", [("Content-Type", content_type), _NO_CACHE], body.encode()


def with_status_wsgi(app: Any, pages: StatusPages) -> Any:
    """The WSGI app behind the status and ping pages."""

    def status_or_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        answer = pages.answer(environ["fcgi.params"])
        if answer is None:
            return app(environ, start_response)
        status, headers, body = answer
        start_response(status, headers)
        return [body]

    return status_or_app


def with_status_asgi(app: Any, pages: StatusPages) -> Any:
    """The ASGI app behind the status and ping pages (lifespan goes to the app)."""

    async def status_or_app(
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http":
            answer = pages.answer(scope["extensions"]["fastcgi"]["params"])
            if answer is not None:
                _, headers, body = answer
                encoded = [(n.lower().encode(), v.encode()) for n, v in headers]
                await send({"type": "http.response.start", "status": 200, "headers": encoded})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return status_or_app
