"""The WSGI apps of the benchmark scenarios, one callable each, stdlib only.

Every WSGI target serves these same callables (uWSGI's Debian plugin runs the system
Python, so nothing here may need the venv). The ASGI twins are in asgi_apps.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]
CHUNK = b"x" * 65536
STREAM_CHUNKS = 16  # 16 x 64 KiB = the 1 MiB response
#: The slow reader's pace: a body arrives over loopback at GB/s, so a server that reads
#: ahead of the app has to hold or spill what the app has not taken yet.
SLOW_BYTES_PER_SECOND = 64 * 1024 * 1024


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Hello, world (13 bytes), as examples/hello.py."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


def stream(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """1 MiB, produced in 64 KiB chunks, so the server writes while the app yields."""
    length = str(len(CHUNK) * STREAM_CHUNKS)
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", length)]
    )
    return (CHUNK for _ in range(STREAM_CHUNKS))


def _chunks(environ: dict[str, Any]) -> Iterator[bytes]:
    """The request body in reads of at most 64 KiB, up to CONTENT_LENGTH."""
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"]
    while remaining > 0:
        chunk = body.read(min(remaining, len(CHUNK)))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def _counted(start_response: StartResponse, count: int) -> Iterable[bytes]:
    text = str(count).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


def upload(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole body and answer its length."""
    return _counted(start_response, sum(len(chunk) for chunk in _chunks(environ)))


def slow_upload(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Read the body at SLOW_BYTES_PER_SECOND and answer its length."""
    count, started = 0, time.monotonic()
    for chunk in _chunks(environ):
        count += len(chunk)
        time.sleep(max(0.0, pace(started, count)))
    return _counted(start_response, count)


def pace(started: float, count: int) -> float:
    """Seconds to wait so that ``count`` bytes took SLOW_BYTES_PER_SECOND since ``started``.

    Sleeping per chunk instead would run slow by the sleep call's overhead in WSGI and fast
    in ASGI, where uvloop's timers round sub-millisecond delays down to nothing.
    """
    return started + count / SLOW_BYTES_PER_SECOND - time.monotonic()
