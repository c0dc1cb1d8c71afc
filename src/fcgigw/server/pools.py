"""The master of a file of pools (--config with [pool.NAME] tables): php-fpm's master process.

The master binds every pool's sockets (as root, when it is started as root) and forks one
child per pool: that pool's server, or its --workers supervisor. A child applies the pool's
[env] and serves on the sockets it was given; its processes switch to the pool's user
before they import the app. The master never imports an application.

The master keeps the sockets, so a pool can be replaced without refusing a connection: the
new child starts on the same sockets, and the old one is stopped gracefully once the new
one serves. Signals (handlers only record them; the loop acts):

- HUP: re-read the file. A pool that was added is started, one that was removed is stopped
  gracefully, one whose settings or env changed is replaced as above, and the others are
  not signalled at all. A file with errors changes nothing (each error is logged).
- USR2: replace every pool in the same way (new code for all of them).
- TERM stops every pool gracefully; INT and QUIT stop them fast.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..config import Config
from ..config_file import ConfigFile, Pool
from .listeners import BindError, ListenerSet
from .privileges import apply_environment
from .signal_inbox import (
    SignalInbox,
    child_exit_code,
    reaped,
    signal_process,
    stop_when_orphaned,
)

logger = logging.getLogger("fcgigw.pools")

#: Runs in a freshly forked pool child: serve ``pool`` on the sockets, call the readiness
#: callback once a process of the pool serves; returns the exit code.
PoolMain = Callable[[Pool, list[socket.socket], Callable[[], None]], int]
#: Re-reads the file (on SIGHUP); raises ValueError (ConfigFileError) when it is wrong.
ReadFile = Callable[[], ConfigFile]

#: Pool child exit codes meaning its settings or its app cannot start (cli.EXIT_CONFIG,
#: EXIT_APP_LOAD, EXIT_BIND, EXIT_LIFESPAN): it is not restarted until the next SIGHUP.
START_FAILURES = (2, 3, 4, 5)
#: First and longest wait before restarting a pool child that died (doubling in between).
RESTART_DELAY_SECONDS = (0.1, 10.0)
#: A child that served this long resets its pool's restart delay.
STABLE_AFTER_SECONDS = 10.0
#: A child gets its graceful timeout plus this long (its supervisor's own SIGKILL margin
#: included) before the master kills it.
STOP_MARGIN_SECONDS = 5.0
#: After a fast stop (INT/QUIT), children get this long before SIGKILL.
FAST_STOP_SECONDS = 10.0
TICK_SECONDS = 0.5
#: Seconds between a single-process pool's checks that its master is still alive.
ORPHAN_CHECK_SECONDS = 1.0
#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1

_HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR2,
    signal.SIGCHLD,
)


@dataclass
class Child:
    """One pool child as the master tracks it."""

    pool: Pool
    pid: int
    ready_fd: int  # read end of the pipe a process of the pool writes to once it serves
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    stopping: bool = False
    kill_at: float | None = None


class PoolMaster:
    """Runs the pools of a file until stopped; see the module docstring."""

    def __init__(self, loaded: ConfigFile, read_file: ReadFile, pool_main: PoolMain) -> None:
        self.wanted: dict[str, Pool] = dict(loaded.pools)
        self.read_file = read_file
        self.pool_main = pool_main
        self.listeners = ListenerSet()
        self.listeners.open_for(_owners(self.wanted.values()))  # BindError: nothing started
        self.children: dict[int, Child] = {}
        self.current: dict[str, Child] = {}
        self.failed: dict[str, int] = {}
        self.exit_code = 0
        self._restart_at: dict[str, float] = {}
        self._restart_delay: dict[str, float] = {}
        self._stopping = False
        self._inbox = SignalInbox(_HANDLED)

    # -- running -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; the exit code for the process."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the pool master must run in the main thread")
        self._inbox.install()
        logger.info("master %d starting pools: %s", os.getpid(), ", ".join(self.wanted))
        try:
            for pool in self.wanted.values():
                self._start(pool)
            while self.children or not self._stopping:
                self._wait_for_events()
                self._handle_signals()
                self._reap()
                self._enforce_deadlines()
                if not self._stopping:
                    self._start_due()
        finally:
            self._inbox.restore()
            self._inbox.close()
            self.listeners.close()
        logger.info("master stopped")
        return self.exit_code

    def _wait_for_events(self) -> None:
        pending = [c.ready_fd for c in self.children.values() if c.ready_fd >= 0]
        timeout = TICK_SECONDS
        if self._restart_at:
            timeout = max(0.0, min(timeout, min(self._restart_at.values()) - time.monotonic()))
        readable, _, _ = select.select([self._inbox.wakeup, *pending], [], [], timeout)
        for fd in readable:
            if fd == self._inbox.wakeup:
                self._inbox.clear_wakeup()
            else:
                self._mark_ready(next(c for c in self.children.values() if c.ready_fd == fd))

    def _mark_ready(self, child: Child) -> None:
        try:
            data = os.read(child.ready_fd, 1)
        except OSError:
            data = b""
        os.close(child.ready_fd)
        child.ready_fd = -1
        if not data:
            return  # the child died before serving: _reap handles it
        child.ready = True
        name = child.pool.name
        logger.info("pool %s: process %d serving", name, child.pid)
        if self.current.get(name) is child:
            for old in self._others(child):
                logger.info("pool %s: stopping the process it replaces, %d", name, old.pid)
                self._stop_child(old, graceful=True)

    def _others(self, child: Child) -> list[Child]:
        """The pool's other live children: the ones ``child`` replaces."""
        return [
            c
            for c in self.children.values()
            if c.pool.name == child.pool.name and c is not child and not c.stopping
        ]

    # -- signals -------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        pending = self._inbox.pending
        while pending:
            signum = pending.popleft()
            if signum == signal.SIGTERM:
                self.stop(graceful=True)
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                self.stop(graceful=False)
            elif signum == signal.SIGHUP and not self._stopping:
                self.reload()
            elif signum == signal.SIGUSR2 and not self._stopping:
                logger.info("SIGUSR2: replacing every pool")
                for pool in self.wanted.values():
                    self._start(pool)

    def stop(self, graceful: bool) -> None:
        """Stop every pool: TERM (graceful) or INT (fast), then KILL past the deadline."""
        if not self._stopping:
            logger.info("stopping every pool %s", "gracefully" if graceful else "fast")
        self._stopping = True
        for child in self.children.values():
            self._stop_child(child, graceful)

    def _stop_child(self, child: Child, graceful: bool) -> None:
        grace = child.pool.config.graceful_timeout_seconds + STOP_MARGIN_SECONDS
        deadline = time.monotonic() + (grace if graceful else FAST_STOP_SECONDS)
        if child.stopping and child.kill_at is not None and child.kill_at <= deadline:
            return
        child.stopping = True
        child.kill_at = deadline
        signal_process(child.pid, signal.SIGTERM if graceful else signal.SIGINT)

    # -- reloading -----------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: apply the file as it is now, or change nothing if it is wrong."""
        try:
            loaded = self.read_file()
            if not loaded.pools:
                raise ValueError(f"{loaded.path}: no [pool.NAME] table left")
            self.listeners.open_for(_owners(loaded.pools.values()))
        except (ValueError, BindError) as error:
            for line in str(error).splitlines():
                logger.error("SIGHUP: %s", line)
            logger.error("SIGHUP: nothing changed; the running pools keep serving")
            return
        logging.getLogger("fcgigw").setLevel(loaded.main.log_level.upper())
        for name in [name for name in self.wanted if name not in loaded.pools]:
            logger.info("SIGHUP: pool %s removed: stopping it", name)
            self._forget(name)
            for child in self.children.values():
                if child.pool.name == name:
                    self._stop_child(child, graceful=True)
        for name, pool in loaded.pools.items():
            if self.wanted.get(name) == pool and name not in self.failed:
                continue  # untouched: not signalled at all
            what = "added" if name not in self.wanted else "changed"
            logger.info("SIGHUP: pool %s %s: starting it", name, what)
            self._forget(name)
            self.wanted[name] = pool
            self._start(pool)
        self.listeners.keep_only(_owners(self.wanted.values()))

    def _forget(self, name: str) -> None:
        self.wanted.pop(name, None)
        self.current.pop(name, None)
        self.failed.pop(name, None)
        self._restart_at.pop(name, None)
        self._restart_delay.pop(name, None)

    # -- children ------------------------------------------------------------------------

    def _start(self, pool: Pool) -> None:
        """Fork a child for ``pool``; the pool's older children serve until it does."""
        try:
            self.listeners.open_for(_owners([pool]))
        except BindError as error:
            logger.error("pool %s: %s", pool.name, error)
            self._back_off(pool.name, time.monotonic())
            return
        sockets = self.listeners.of(pool.name, pool.config)
        ready_read, ready_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is collected by its own exit
            os.close(ready_read)
            os._exit(self._child_process(pool, sockets, ready_write))
        os.close(ready_write)
        child = Child(pool, pid, ready_read)
        self.children[pid] = child
        self.current[pool.name] = child
        self.failed.pop(pool.name, None)
        self._restart_at.pop(pool.name, None)
        logger.info("pool %s: started process %d", pool.name, pid)

    def _child_process(self, pool: Pool, sockets: list[socket.socket], ready_write: int) -> int:
        """In the forked child: forget the master's state, serve the pool, an exit code."""
        master_pid = os.getppid()
        self._inbox.restore()
        for signum in (signal.SIGHUP, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)  # a --workers pool installs its own
        self._inbox.close()
        for child in self.children.values():
            if child.ready_fd >= 0:
                os.close(child.ready_fd)
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

    def _reap(self) -> None:
        for child, code in reaped(self.children):
            self._child_exited(child, code)

    def _child_exited(self, child: Child, code: int) -> None:
        if child.ready_fd >= 0:
            os.close(child.ready_fd)
        name = child.pool.name
        if child.stopping or self._stopping:
            logger.info("pool %s: process %d stopped (exit %d)", name, child.pid, code)
            return
        if self.current.get(name) is not child:
            logger.warning("pool %s: old process %d exited (exit %d)", name, child.pid, code)
            return
        del self.current[name]
        if not child.ready and code in START_FAILURES:
            self._start_failed(child, code)
        elif code == 0:  # max_requests served by a single-process pool
            logger.info("pool %s: process %d exited; restarting it", name, child.pid)
        else:
            logger.error("pool %s: process %d died (exit %d); restarting it", name, child.pid, code)
            self._back_off(name, child.started_at)

    def _start_failed(self, child: Child, code: int) -> None:
        """The pool's settings or app cannot start: keep the process it was to replace, if
        any, or leave the pool stopped until a SIGHUP."""
        name = child.pool.name
        running = self._others(child)
        if running:
            logger.error(
                "pool %s: the new process cannot start (exit %d); the running one keeps serving",
                name,
                code,
            )
            self.current[name] = running[-1]
            self.wanted[name] = running[-1].pool
            self.listeners.keep_only(_owners(self.wanted.values()))
            return
        logger.error("pool %s cannot start (exit %d); fix it and send SIGHUP", name, code)
        self.failed[name] = code
        if not self.children and set(self.failed) == set(self.wanted):
            logger.error("no pool can start; stopping")
            self.exit_code = code
            self.stop(graceful=True)

    def _back_off(self, name: str, started_at: float) -> None:
        delay = self._restart_delay.get(name, RESTART_DELAY_SECONDS[0])
        if time.monotonic() - started_at > STABLE_AFTER_SECONDS:
            delay = RESTART_DELAY_SECONDS[0]
        self._restart_at[name] = time.monotonic() + delay
        self._restart_delay[name] = min(delay * 2, RESTART_DELAY_SECONDS[1])

    def _start_due(self) -> None:
        now = time.monotonic()
        for name, pool in self.wanted.items():
            if name in self.current or name in self.failed:
                continue
            if self._restart_at.get(name, 0.0) <= now:
                self._start(pool)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.kill_at is not None and now >= child.kill_at:
                logger.warning(
                    "pool %s: process %d did not stop in time: killing it",
                    child.pool.name,
                    child.pid,
                )
                signal_process(child.pid, signal.SIGKILL)
                child.kill_at = None


def _owners(pools: Iterable[Pool]) -> list[tuple[str, Config]]:
    return [(pool.name, pool.config) for pool in pools]


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
