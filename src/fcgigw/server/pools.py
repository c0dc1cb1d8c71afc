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

systemd (sd_notify.py) hears that the master is ready once each pool it started has a
process serving or has failed, at the start and after HUP or USR2.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from ..config_file import ConfigFile, Pool
from .forked import (
    STOP_SIGNALS,
    close_ready_pipe,
    kill_overdue,
    read_ready,
    recording_signals,
    stop_child,
    wait_for_events,
)
from .listeners import BindError, ListenerSet
from .pool_child import Child, Exit, PoolForker, PoolMain, judge_exit, replaced_by
from .pool_file import ReadFile, owners, read_again
from .pool_roster import Roster
from .sd_notify import ReadyWhenSettled
from .signal_inbox import SignalInbox, reaped

logger = logging.getLogger("fcgigw.pools")

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

_HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR2,
    signal.SIGCHLD,
)


class PoolMaster:
    """Runs the pools of a file until stopped; see the module docstring."""

    def __init__(self, loaded: ConfigFile, read_file: ReadFile, pool_main: PoolMain) -> None:
        self.roster = Roster(loaded.pools, RESTART_DELAY_SECONDS, STABLE_AFTER_SECONDS)
        self.read_file = read_file
        self.listeners = ListenerSet()
        self.listeners.open_for(owners(loaded.pools.values()))  # BindError: nothing started
        self.children: dict[int, Child] = {}
        self.exit_code = 0
        self._stopping = False
        self._inbox = SignalInbox(_HANDLED)
        self._forker = PoolForker(pool_main, self.listeners, self._inbox)
        self.readiness = ReadyWhenSettled(self.roster.serving)  # for systemd (cli.py)

    # -- running -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; the exit code for the process."""
        with recording_signals(self._inbox, "the pool master"):
            logger.info("master %d starting pools: %s", os.getpid(), ", ".join(self.roster.wanted))
            try:
                self.readiness.expect(self.roster.wanted)
                for pool in self.roster.wanted.values():
                    self._start(pool)
                while self.children or not self._stopping:
                    self._wait_for_events()
                    self._handle_signals()
                    for child, code in reaped(self.children):
                        self._child_exited(child, code)
                    kill_overdue(self.children.values(), _warn_overdue)
                    if not self._stopping:
                        for pool in self.roster.due():
                            self._start(pool)
            finally:
                self.listeners.close()
        logger.info("master stopped")
        return self.exit_code

    def _wait_for_events(self) -> None:
        due = self.roster.next_due()
        ready, _ = wait_for_events(self._inbox, self.children.values(), TICK_SECONDS, due)
        for child in ready:
            if not read_ready(child):
                continue  # the child died before serving: reaping it handles that
            name = child.pool.name
            logger.info("pool %s: process %d serving", name, child.pid)
            self.readiness.settled(name)
            if self.roster.current.get(name) is child:
                for old in replaced_by(child, self.children.values()):
                    logger.info("pool %s: stopping the process it replaces, %d", name, old.pid)
                    self._stop_child(old, graceful=True)

    # -- signals -------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        pending = self._inbox.pending
        while pending:
            signum = pending.popleft()
            if signum in STOP_SIGNALS:
                self.stop(graceful=STOP_SIGNALS[signum])
            elif signum == signal.SIGHUP and not self._stopping:
                self.reload()
            elif signum == signal.SIGUSR2 and not self._stopping:
                logger.info("SIGUSR2: replacing every pool")
                self.readiness.notifier.reloading("replacing every pool")
                self.readiness.expect(self.roster.wanted)
                for pool in self.roster.wanted.values():
                    self._start(pool)

    def stop(self, graceful: bool) -> None:
        """Stop every pool: TERM (graceful) or INT (fast), then KILL past the deadline."""
        if not self._stopping:
            logger.info("stopping every pool %s", "gracefully" if graceful else "fast")
            self.readiness.notifier.stopping("stopping every pool")
        self._stopping = True
        for child in self.children.values():
            self._stop_child(child, graceful)

    def _stop_child(self, child: Child, graceful: bool) -> None:
        grace = child.pool.config.graceful_timeout_seconds + STOP_MARGIN_SECONDS
        stop_child(child, graceful, grace if graceful else FAST_STOP_SECONDS)

    # -- reloading -----------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: apply the file as it is now, or change nothing if it is wrong."""
        self.readiness.notifier.reloading("reading the file again")
        loaded = read_again(self.read_file, self.listeners)
        if loaded is None:
            self.readiness.expect(())
            return
        roster = self.roster
        for name in [name for name in roster.wanted if name not in loaded.pools]:
            logger.info("SIGHUP: pool %s removed: stopping it", name)
            roster.forget(name)
            for child in self.children.values():
                if child.pool.name == name:
                    self._stop_child(child, graceful=True)
        # The others are untouched: not signalled at all.
        changed = {
            name: pool
            for name, pool in loaded.pools.items()
            if roster.wanted.get(name) != pool or name in roster.failed
        }
        self.readiness.expect(changed)
        for name, pool in changed.items():
            what = "added" if name not in roster.wanted else "changed"
            logger.info("SIGHUP: pool %s %s: starting it", name, what)
            roster.forget(name)
            roster.wanted[name] = pool
            self._start(pool)
        self.listeners.keep_only(owners(roster.wanted.values()))

    # -- children ------------------------------------------------------------------------

    def _start(self, pool: Pool) -> None:
        """Fork a child for ``pool``; the pool's older children serve until it does."""
        try:
            self.listeners.open_for(owners([pool]))
        except BindError as error:
            logger.error("pool %s: %s", pool.name, error)
            self.roster.died(pool.name, time.monotonic())
            self.readiness.settled(pool.name)
            return
        child = self._forker.fork(pool, self.children.values())
        self.children[child.pid] = child
        self.roster.started(child)
        logger.info("pool %s: started process %d", pool.name, child.pid)

    def _child_exited(self, child: Child, code: int) -> None:
        close_ready_pipe(child)
        name = child.pool.name
        verdict = judge_exit(child, code, self._stopping, self.roster.current.get(name))
        if verdict is not Exit.GONE:
            del self.roster.current[name]
            self.readiness.settled(name)
        if verdict is Exit.CANNOT_START:
            self._start_failed(child, code)
        elif verdict is Exit.DIED:
            self.roster.died(name, child.started_at)

    def _start_failed(self, child: Child, code: int) -> None:
        """The pool's settings or app cannot start: keep the process it was to replace, if
        any, or leave the pool stopped until a SIGHUP."""
        name = child.pool.name
        running = replaced_by(child, self.children.values())
        if running:
            logger.error(
                "pool %s: the new process cannot start (exit %d); the running one keeps serving",
                name,
                code,
            )
            self.roster.current[name] = running[-1]
            self.roster.wanted[name] = running[-1].pool
            self.listeners.keep_only(owners(self.roster.wanted.values()))
            return
        logger.error("pool %s cannot start (exit %d); fix it and send SIGHUP", name, code)
        self.roster.failed[name] = code
        if not self.children and set(self.roster.failed) == set(self.roster.wanted):
            logger.error("no pool can start; stopping")
            self.exit_code = code
            self.stop(graceful=True)


def _warn_overdue(child: Child) -> None:
    logger.warning(
        "pool %s: process %d did not stop in time: killing it", child.pool.name, child.pid
    )
