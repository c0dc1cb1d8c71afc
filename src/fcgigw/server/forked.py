"""What the processes that fork others (the --workers supervisor, the pool master) do the same
way with each child: fork it with a readiness pipe, learn that it serves, stop it with a
deadline and kill it past that, wait before restarting one that died, and, in the child,
forget the parent's signals and pipes."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .signal_inbox import SignalInbox, signal_process

#: The signals that stop a parent and its children, and whether gracefully (gunicorn's set:
#: TERM finishes the requests in flight, INT and QUIT do not).
STOP_SIGNALS: Mapping[int, bool] = {
    signal.SIGTERM: True,
    signal.SIGINT: False,
    signal.SIGQUIT: False,
}


@dataclass(kw_only=True)
class Forked:
    """A forked child as its parent tracks it."""

    pid: int
    ready_fd: int  # read end of the pipe the child writes one byte to once it serves
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    ready_at: float = 0.0
    stopping: bool = False
    kill_at: float | None = None


AnyForked = TypeVar("AnyForked", bound=Forked)


class Backoff:
    """When to restart a child that died: after a delay that doubles with each death, up to
    the longest, and starts over once a child served ``stable_after`` seconds."""

    def __init__(self, delays: tuple[float, float], stable_after: float) -> None:
        self.first, self.longest = delays
        self.stable_after = stable_after
        self.delay = self.first
        self.due = 0.0  # when the restart may start; 0.0: none is waiting

    def died(self, started_at: float) -> None:
        """A child started at ``started_at`` died: its restart waits."""
        if time.monotonic() - started_at > self.stable_after:
            self.delay = self.first
        self.due = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, self.longest)


@contextlib.contextmanager
def recording_signals(inbox: SignalInbox, who: str) -> Iterator[None]:
    """The parent's loop, with ``inbox`` recording the signals. Only the main thread gets
    signals, so it must be that thread."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(f"{who} must run in the main thread")
    inbox.install()
    try:
        yield
    finally:
        inbox.restore()
        inbox.close()


class _BeforeFork:
    """The parent's signal mask from before its last fork: what leave_parent puts back in
    the child (a copy of the parent at the fork, this included)."""

    mask: set[int | signal.Signals] = set()  # noqa: RUF012 - one per process, set at each fork


def fork_with_ready_pipe(child_main: Callable[[int], int]) -> tuple[int, int]:
    """Fork a child that runs ``child_main(ready_write)`` and exits with what it returns;
    the parent gets the child's pid and the pipe's read end.

    Every signal is blocked across the fork, and in the child until leave_parent has put
    its handling in place: a signal sent at once to a new child (a TTOU right after the
    TTIN that started it) would otherwise meet the parent's recording handler in the child,
    which records it where nobody looks, or be dropped by CPython if leave_parent resets
    that handler before it runs. Blocked, it waits, and then meets the child's own handling
    (the SIGTERM of a worker not serving yet: the default, which ends it)."""
    ready_read, ready_write = os.pipe()
    _BeforeFork.mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is collected by its own exit
            os.close(ready_read)
            os._exit(child_main(ready_write))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, _BeforeFork.mask)  # the parent's again
    os.close(ready_write)
    return pid, ready_read


def leave_parent(
    inbox: SignalInbox, ignored: Iterable[signal.Signals], siblings: Iterable[Forked]
) -> None:
    """In the forked child: the parent's signal handling and its pipes are not the child's.
    The signals fork_with_ready_pipe blocked are let through once its own handling is set."""
    inbox.restore()
    for signum in ignored:
        signal.signal(signum, signal.SIG_IGN)
    inbox.close()
    for sibling in siblings:
        if sibling.ready_fd >= 0:
            os.close(sibling.ready_fd)
    signal.pthread_sigmask(signal.SIG_SETMASK, _BeforeFork.mask)


def wait_for_events(
    inbox: SignalInbox,
    children: Iterable[AnyForked],
    tick: float,
    due: float | None,
    also: Sequence[int] = (),
) -> tuple[list[AnyForked], list[int]]:
    """Wait for a signal, a child's readiness byte (or its EOF), one of ``also`` readable,
    ``due`` or ``tick`` seconds; the children to read from, and which of ``also`` is readable."""
    waiting = {child.ready_fd: child for child in children if child.ready_fd >= 0}
    timeout = tick if due is None else max(0.0, min(tick, due - time.monotonic()))
    try:
        readable, _, _ = select.select([inbox.wakeup, *waiting, *also], [], [], timeout)
    except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
        return [], []
    if inbox.wakeup in readable:
        inbox.clear_wakeup()
    return [waiting[fd] for fd in readable if fd in waiting], [fd for fd in readable if fd in also]


def read_ready(child: Forked) -> bool:
    """Read the child's readiness byte and close the pipe; whether it serves. EOF without
    the byte: it died before serving, and reaping it handles that."""
    try:
        data = os.read(child.ready_fd, 1)
    except OSError:
        data = b""
    os.close(child.ready_fd)
    child.ready_fd = -1
    if data:
        child.ready = True
        child.ready_at = time.monotonic()
    return bool(data)


def close_ready_pipe(child: Forked) -> None:
    """A child that exited without a word: its pipe is closed unread."""
    if child.ready_fd >= 0:
        os.close(child.ready_fd)


def stop_child(child: Forked, graceful: bool, grace_seconds: float) -> bool:
    """TERM (graceful) or INT (fast), to be killed ``grace_seconds`` from now; whether it was
    signalled (not when it already has an earlier deadline)."""
    deadline = time.monotonic() + grace_seconds
    if child.stopping and child.kill_at is not None and child.kill_at <= deadline:
        return False
    child.stopping = True
    child.kill_at = deadline
    signal_process(child.pid, signal.SIGTERM if graceful else signal.SIGINT)
    return True


def kill_overdue(children: Iterable[AnyForked], warn: Callable[[AnyForked], None]) -> None:
    """SIGKILL the children past their deadline, each after ``warn(child)`` logged it."""
    now = time.monotonic()
    for child in children:
        if child.kill_at is not None and now >= child.kill_at:
            warn(child)
            signal_process(child.pid, signal.SIGKILL)
            child.kill_at = None
