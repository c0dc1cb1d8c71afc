"""What the processes that manage others (the --workers supervisor, the pool master) share
about signals: handlers that only record (gunicorn's arbiter: "no logging, just queue the
signal") and a wake-up pipe the main loop selects on, so it acts on them; signalling a child
that may be gone already; stopping a child whose parent is gone. Also what both do with the
children they fork: the child's exit code whatever happens, and reaping those that exited."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TypeVar

logger = logging.getLogger("fcgigw.supervisor")

Child = TypeVar("Child")

#: Seconds between a child's checks that its parent is still alive.
ORPHAN_CHECK_SECONDS = 1.0


class SignalInbox:
    """Signals queued by their handlers; ``wakeup`` becomes readable when one comes."""

    def __init__(self, handled: tuple[signal.Signals, ...]) -> None:
        self._handled = handled
        self.pending: deque[int] = deque()
        self.wakeup, self._wakeup_write = os.pipe()

    def install(self) -> None:
        os.set_blocking(self._wakeup_write, False)
        signal.set_wakeup_fd(self._wakeup_write)
        for signum in self._handled:
            signal.signal(signum, self._record)

    def restore(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum in self._handled:
            signal.signal(signum, signal.SIG_DFL)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def clear_wakeup(self) -> None:
        """Empty the pipe once select() has said it is readable."""
        os.read(self.wakeup, 4096)

    def close(self) -> None:
        """Close the pipe (at the end, and in a forked child, which has its own)."""
        os.close(self.wakeup)
        os.close(self._wakeup_write)


def signal_process(pid: int, signum: int) -> None:
    """``os.kill``, quiet when the process has already gone."""
    try:
        os.kill(pid, signum)
    except OSError as error:
        if error.errno != errno.ESRCH:
            raise


def stop_when_orphaned(parent_pid: int, parent: str) -> None:
    """A child whose ``parent`` died (SIGKILL, the OOM killer) stops gracefully instead of
    serving on with nothing to stop it: a thread polls the parent's pid."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(ORPHAN_CHECK_SECONDS)
        logger.warning("%s %d is gone: stopping", parent, parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="fcgigw-orphan-watch", daemon=True).start()


def child_exit_code(main: Callable[[], int], parent_logger: logging.Logger, failure: str) -> int:
    """Run a forked child's ``main`` and return its exit code, whatever happens: unwinding
    into the parent's loop would leave two parents. ``failure`` is logged with a traceback."""
    try:
        return main()
    except SystemExit as error:
        return error.code if isinstance(error.code, int) else 1
    except BaseException:
        parent_logger.exception(failure)
        return 1
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()


def reaped(children: dict[int, Child]) -> Iterator[tuple[Child, int]]:
    """The children (by pid) that have exited, without waiting: each is taken out of
    ``children`` and comes with its exit code (-N for signal N)."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        child = children.pop(pid, None)
        if child is not None:
            yield child, os.waitstatus_to_exitcode(status)
