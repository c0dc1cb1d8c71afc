"""One pool child of the pool master (pools.py): the record the master keeps of it, what the
forked child does before it serves its pool, and what its exit means to the master."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..config_file import Pool
from .forked import Forked, fork_with_ready_pipe, leave_parent
from .listeners import ListenerSet
from .privileges import apply_environment
from .signal_inbox import SignalInbox, child_exit_code, stop_when_orphaned

logger = logging.getLogger("fcgigw.pools")

#: Runs in a freshly forked pool child: serve ``pool`` on the sockets, call the readiness
#: callback once a process of the pool serves; returns the exit code.
PoolMain = Callable[[Pool, list[socket.socket], Callable[[], None]], int]

#: Pool child exit codes meaning its settings or its app cannot start (cli.EXIT_CONFIG,
#: EXIT_APP_LOAD, EXIT_BIND, EXIT_LIFESPAN): it is not restarted until the next SIGHUP.
START_FAILURES = (2, 3, 4, 5)
#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: The master's business: a --workers pool installs its own.
CHILD_IGNORES = (signal.SIGHUP, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU)


@dataclass(kw_only=True)
class Child(Forked):
    """One pool child as the master tracks it (its ready pipe is written to once a process
    of the pool serves)."""

    pool: Pool


def replaced_by(child: Child, children: Iterable[Child]) -> list[Child]:
    """The other live children of ``child``'s pool: the ones ``child`` replaces."""
    return [
        c for c in children if c.pool.name == child.pool.name and c is not child and not c.stopping
    ]


class Exit(enum.Enum):
    """What a pool child's exit asks of the master."""

    GONE = "gone"  # stopped, or replaced already: nothing to do
    DONE = "done"  # max_requests served: restarted at once
    DIED = "died"  # restarted after the back-off
    CANNOT_START = "cannot start"  # its settings or app cannot start


def judge_exit(child: Child, code: int, stopping: bool, current: Child | None) -> Exit:
    """What ``child``'s exit with ``code`` means (logged), ``current`` being its pool's
    newest child."""
    name = child.pool.name
    if child.stopping or stopping:
        logger.info("pool %s: process %d stopped (exit %d)", name, child.pid, code)
        return Exit.GONE
    if current is not child:
        logger.warning("pool %s: old process %d exited (exit %d)", name, child.pid, code)
        return Exit.GONE
    if not child.ready and code in START_FAILURES:
        return Exit.CANNOT_START
    if code == 0:  # max_requests served by a single-process pool
        logger.info("pool %s: process %d exited; restarting it", name, child.pid)
        return Exit.DONE
    logger.error("pool %s: process %d died (exit %d); restarting it", name, child.pid, code)
    return Exit.DIED


class PoolForker:
    """Forks the pool children; each forgets the master's state before it serves."""

    def __init__(self, pool_main: PoolMain, listeners: ListenerSet, inbox: SignalInbox) -> None:
        self.pool_main = pool_main
        self.listeners = listeners
        self.inbox = inbox

    def fork(self, pool: Pool, siblings: Iterable[Child]) -> Child:
        """Fork a child that serves ``pool``; ``siblings``' pipes are closed in it."""
        sockets = self.listeners.of(pool.name, pool.config)
        pid, ready_read = fork_with_ready_pipe(
            lambda ready_write: self._child_process(pool, sockets, ready_write, siblings)
        )
        return Child(pool=pool, pid=pid, ready_fd=ready_read)

    def _child_process(
        self,
        pool: Pool,
        sockets: list[socket.socket],
        ready_write: int,
        siblings: Iterable[Child],
    ) -> int:
        """In the forked child: forget the master's state, serve the pool, an exit code."""
        master_pid = os.getppid()
        leave_parent(self.inbox, CHILD_IGNORES, siblings)
        for sock in self.listeners.sockets.values():
            if all(sock is not mine for mine in sockets):
                sock.close()  # another pool's: a stopped pool's socket must really close
        _stop_with_master(master_pid, pool.config.workers > 0)
        apply_environment(pool.env)

        def ready() -> None:
            with contextlib.suppress(OSError):  # a later worker's: the master has stopped reading
                os.write(ready_write, b"1")

        return child_exit_code(
            lambda: self.pool_main(pool, sockets, ready), logger, f"pool {pool.name} failed"
        )


def _stop_with_master(master_pid: int, supervisor: bool) -> None:
    """A pool whose master died (SIGKILL, the OOM killer) stops gracefully instead of
    serving on with nothing to stop it. A --workers pool (its supervisor keeps its ids and
    forks) asks the kernel for a SIGTERM (prctl PR_SET_PDEATHSIG, Linux); a single-process
    pool, whose switch of user would clear that, polls from a thread."""
    if supervisor and sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != master_pid:  # it died before the prctl
            os.kill(os.getpid(), signal.SIGTERM)
        return

    stop_when_orphaned(master_pid, "master")
