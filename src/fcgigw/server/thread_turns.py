"""Turns on a connection that several threads share (thread_connection): one lock, and a
Condition over it for whoever has to wait for a turn, made the first time someone has to
(most connections never do); and what the read and write turns need of the connection.

The turns (thread_reader.ConnectionReader, thread_writer.ConnectionWriter) are given the
connection on each call instead of holding it: the connection holds them, and a link back
would make every connection a reference cycle, left for the cycle collector to find.
"""

from __future__ import annotations

import threading
from typing import Protocol

from .accept import ConnectionSocket
from .core import ConnectionCore


class ReadTurn(Protocol):
    """The read turn as the writer sees it (thread_reader.ConnectionReader)."""

    reading: bool

    def read_while_writing(self, connection: TurnConnection) -> None: ...


class WriteTurn(Protocol):
    """The write turn as the reader sees it (thread_writer.ConnectionWriter)."""

    def flush(self, connection: TurnConnection) -> None: ...


class TurnConnection(Protocol):
    """What the turns need of their connection (thread_connection.ThreadedConnection): its
    socket, its core and the lock that guards them, with a wait for a turn under it."""

    sock: ConnectionSocket
    lock: threading.Lock
    core: ConnectionCore
    closed: bool
    inline_since: float

    @property
    def reader(self) -> ReadTurn: ...

    @property
    def writer(self) -> WriteTurn: ...

    def wait(self) -> None: ...

    def wake(self) -> None: ...

    def requests_waiting(self) -> bool: ...

    def after_read(self) -> None: ...

    def shutdown(self, how: int) -> None: ...


class Turns:
    """``lock`` guards the connection; ``wait`` sleeps until a turn is given back, ``wake``
    wakes the sleepers. Both are called with ``lock`` held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._turn: threading.Condition | None = None
        self._waiting = 0

    def wait(self) -> None:
        """Sleep until a turn is given back (the caller holds ``lock``)."""
        if self._turn is None:
            self._turn = threading.Condition(self.lock)
        self._waiting += 1
        try:
            self._turn.wait()
        finally:
            self._waiting -= 1

    def wake(self) -> None:
        """Wake whoever waits for a turn (the caller holds ``lock``)."""
        if self._waiting and self._turn is not None:
            self._turn.notify_all()

    def wake_readers(self) -> None:
        """wake(), from a thread that does not hold the lock (the clock, after a 504)."""
        with self.lock:
            self.wake()
