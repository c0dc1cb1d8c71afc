"""Logging set-up and the access log line."""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol

from ..adapters.channel import Params


class Logged(Protocol):
    """What the access log reads from a finished request (either server's channel)."""

    @property
    def params(self) -> Params: ...

    started_at: float
    status: bytes
    bytes_sent: int


access_logger = logging.getLogger("fcgigw.access")


def configure_logging(level: str, label: str = "") -> None:
    """One stderr handler for the fcgigw loggers (the app's own logging is left alone);
    ``label`` (a pool's name) follows the process id on each line."""
    handler = logging.StreamHandler(sys.stderr)
    process = f"%(process)d {label}" if label else "%(process)d"
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s [{process}] %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("fcgigw")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def log_access(channel: Logged) -> None:
    """A combined-log-like line: client, method, URI, status, bytes, milliseconds."""
    params = dict(channel.params)
    elapsed_ms = (time.monotonic() - channel.started_at) * 1000
    access_logger.info(
        '%s "%s %s" %s %d %.1fms',
        params.get(b"REMOTE_ADDR", b"-").decode("latin-1"),
        params.get(b"REQUEST_METHOD", b"-").decode("latin-1"),
        params.get(b"REQUEST_URI", b"-").decode("latin-1"),
        (channel.status or b"-").decode("latin-1"),
        channel.bytes_sent,
        elapsed_ms,
    )
