"""The slow log (--slow-request-timeout, --slow-log): a request still running after that long is
logged once, with the worker's pid, its method and URI, and the Python stack that runs it, down
to the line of the app's code where it waits (php-fpm's slowlog, uWSGI's harakiri traceback).

Each channel says where its app runs, since the compiled build's own functions have no
Python frames to search: a WSGI channel the thread that runs it (``thread_ident``, whose stack
``sys._current_frames()`` gives, from the server's ``run_request`` frame when there is one), an
ASGI channel the app's coroutine (``app_call``), followed through ``cr_await`` down to where it
waits (``Task.get_stack`` stops at the outermost suspended one).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import traceback
from collections.abc import Iterable
from types import FrameType
from typing import Any

from .core import CoreRequest

logger = logging.getLogger("fcgigw.slow")

_DESCRIBED = (b"REQUEST_METHOD", b"REQUEST_URI", b"SCRIPT_NAME", b"PATH_INFO", b"QUERY_STRING")
#: The frame that owns a request's thread on the threaded backend (server.Server.run_request).
RUN_REQUEST = "run_request"


def describe(params: Iterable[tuple[bytes, bytes]]) -> tuple[str, str]:
    """A request's method and URI, from its params (REQUEST_URI, else the CGI pieces)."""
    found: dict[bytes, bytes] = {}
    for name, value in params:
        if name in _DESCRIBED:
            found.setdefault(name, value)
    uri = found.get(b"REQUEST_URI")
    if uri is None:
        uri = found.get(b"SCRIPT_NAME", b"") + found.get(b"PATH_INFO", b"")
        if found.get(b"QUERY_STRING"):
            uri += b"?" + found[b"QUERY_STRING"]
    return found.get(b"REQUEST_METHOD", b"-").decode("latin-1"), uri.decode("latin-1")


def open_slow_log(path: str) -> None:
    """Send the slow log to ``path`` instead of the error log (once per process). The file is
    opened again when logrotate has moved or removed it (as a WatchedFileHandler checks
    before each line: slow lines are rare), so rotation needs no signal nor copytruncate."""
    if not path or any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        return
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class SlowLog:
    """Logs each request that runs past ``seconds`` once; ``count`` is how many did."""

    def __init__(self, seconds: int, path: str) -> None:
        self.seconds = seconds
        self.count = 0
        self._logged: set[CoreRequest] = set()
        open_slow_log(path)

    def check(self, running: list[CoreRequest], now: float) -> None:
        """Called by the clock with the requests in flight."""
        if self._logged:
            self._logged.intersection_update(running)
        for request in running:
            age = now - request.started_at
            if age >= self.seconds and request not in self._logged:
                self._logged.add(request)
                self.count += 1
                self._log(request, age)

    def _log(self, request: CoreRequest, age: float) -> None:
        method, uri = describe(request.params)
        frames = request_frames(request.handler)
        stack = "".join(_format(frames)) if frames else "  (its stack was not found)\n"
        logger.warning(
            "slow request: worker %d, %s %s, running for %.1f s (setting slow_request_timeout)\n%s",
            os.getpid(),
            method,
            uri,
            age,
            stack.rstrip("\n"),
        )


def request_frames(handler: Any) -> list[FrameType]:
    """The frames running the request of ``handler`` (a channel), outermost first."""
    app_call = getattr(handler, "app_call", None)
    if app_call is not None:
        return coroutine_frames(app_call)
    thread_ident = getattr(handler, "thread_ident", 0)
    return thread_frames(thread_ident) if thread_ident else []


def thread_frames(thread_ident: int) -> list[FrameType]:
    """The stack of a thread that runs a request, from the server's ``run_request`` frame (the
    pure-Python build), else from below the threading module's own frames (compiled)."""
    frame = sys._current_frames().get(thread_ident)
    chain: list[FrameType] = []
    while frame is not None:
        chain.append(frame)
        frame = frame.f_back
    chain.reverse()
    for depth, candidate in enumerate(chain):
        if candidate.f_code.co_name == RUN_REQUEST:
            return chain[depth:]
    return [frame for frame in chain if frame.f_code.co_filename != threading.__file__]


def coroutine_frames(coroutine: Any) -> list[FrameType]:
    """The frames of a suspended coroutine and of what it awaits, down to the innermost."""
    frames: list[FrameType] = []
    while coroutine is not None:
        frame = _first(coroutine, "cr_frame", "gi_frame", "ag_frame")
        if frame is None:
            break
        frames.append(frame)
        coroutine = _first(coroutine, "cr_await", "gi_yieldfrom", "ag_await")
    return frames


def _first(obj: Any, *names: str) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _format(frames: list[FrameType]) -> list[str]:
    summary = traceback.StackSummary.extract((frame, frame.f_lineno) for frame in frames)
    return summary.format()
