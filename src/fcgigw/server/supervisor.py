"""The main process for ``--workers N``: forks workers that share the listening sockets, keeps
N of them alive, reloads them on SIGHUP without dropping a request, and stops them cleanly.

The supervisor never imports the application: each worker imports it after the fork, so a
reload picks up new code, and a crash in the app cannot take the supervisor down.

Signals (gunicorn's set): TERM stops gracefully (workers finish in-flight requests, bounded by
graceful_timeout_seconds); INT and QUIT stop fast; HUP starts a new generation of workers
and stops the old one only once the new one serves (if it cannot start, the old one stays);
TTIN and TTOU add or remove a worker. Handlers only record the signal; the loop acts on it.
systemd hears of it all (sd_notify.py): ready once a worker of the generation serves.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

from ..config import Config
from .forked import (
    STOP_SIGNALS,
    Backoff,
    close_ready_pipe,
    kill_overdue,
    read_ready,
    recording_signals,
    stop_child,
    wait_for_events,
)
from .pool_watch import PoolWatch, make_scoreboard
from .process_manager import ProcessManager
from .scoreboard import SERVING, STOPPING
from .sd_notify import Notifier
from .signal_inbox import SignalInbox, reaped
from .workers import Exit, Spawner, Worker, WorkerMain, judge_exit, to_retire

logger = logging.getLogger("fcgigw.supervisor")

#: First and longest wait before replacing a worker that died (doubling in between).
RESPAWN_DELAY_SECONDS = (0.1, 10.0)
#: A worker that served this long resets the respawn delay.
STABLE_AFTER_SECONDS = 10.0
#: After a fast stop (INT/QUIT), workers get this long before SIGKILL.
FAST_STOP_SECONDS = 5.0
#: How often the loop wakes when nothing happens (to check deadlines).
TICK_SECONDS = 0.5

_HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)


class Supervisor:
    """Keeps the workers the process manager wants serving (``config.workers`` when it is
    static); see the module docstring for signals."""

    def __init__(self, config: Config, listeners: list[socket.socket], worker_main: WorkerMain):
        self.config = config
        self.notifier = Notifier()  # systemd's, for the process it started (cli.py sets it)
        self.listeners = listeners
        self.worker_main = worker_main
        self.manager = ProcessManager(config)
        self.target = self.manager.initial
        self.workers: dict[int, Worker] = {}
        self.generation = 0
        self.exit_code = 0
        self._stopping = False
        self._respawn = Backoff(RESPAWN_DELAY_SECONDS, STABLE_AFTER_SECONDS)
        self._inbox = SignalInbox(_HANDLED)
        #: Shared with the workers, when a feature reads it (the status page, …).
        self.board = make_scoreboard(config, self.manager)
        self.watch = PoolWatch(self.board, config, self.manager) if self.board else None
        self._spawner = Spawner(worker_main, listeners, self.board, self._inbox)

    # -- running -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; the exit code for the process."""
        with recording_signals(self._inbox, "the supervisor (workers > 0)"):
            name = self.manager.name
            logger.info("supervisor %d starting %d workers (%s)", os.getpid(), self.target, name)
            self._spawn_missing()
            if not self.target:  # on demand: serving with no worker yet
                self._announce()
            while self.workers or not self._stopping:
                self._wait_for_events()
                self._handle_signals()
                for worker, code in reaped(self.workers):
                    self._worker_exited(worker, code)
                kill_overdue(self.workers.values(), _warn_overdue)
                self._watch_scoreboard()
                if not self._stopping:
                    self._retire_old_generations()
                    self._spawn_missing()
        logger.info("supervisor stopped")
        return self.exit_code

    def _wait_for_events(self) -> None:
        due = self._respawn.due or None
        ready, listening = wait_for_events(
            self._inbox, self.workers.values(), TICK_SECONDS, due, self._listeners_to_watch()
        )
        if listening:
            self.target = self.manager.connection_waiting(self.target)
        for worker in ready:
            if read_ready(worker):
                self._spawner.set_phase(worker, SERVING)
                logger.info("worker %d serving (generation %d)", worker.pid, worker.generation)
                if worker.generation == self.generation:
                    self._announce()

    def _announce(self) -> None:
        status = f"serving: {self.target} workers, generation {self.generation}"
        self.notifier.serving(self.generation, status)

    def _listeners_to_watch(self) -> list[int]:
        """On demand with no worker: the listeners, whose readability starts one (the
        supervisor never accepts; the worker takes the connection)."""
        if not self.manager.on_demand or self._stopping or self.target or self._current():
            return []
        return [sock.fileno() for sock in self.listeners]

    # -- signals -------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        pending = self._inbox.pending
        while pending:
            signum = pending.popleft()
            if signum in STOP_SIGNALS:
                self.stop(graceful=STOP_SIGNALS[signum])
            elif signum == signal.SIGHUP and not self._stopping:
                self.reload()
            elif signum == signal.SIGTTIN and not self._stopping:
                self.target += 1
                logger.info("SIGTTIN: %d workers", self.target)
            elif signum == signal.SIGTTOU and not self._stopping and self.target > 1:
                self.target -= 1
                logger.info("SIGTTOU: %d workers", self.target)
                for worker in self._current()[self.target :]:
                    self._stop_worker(worker)

    def reload(self) -> None:
        """A new generation of workers; the old one stops once the new one serves."""
        self.generation += 1
        logger.info("SIGHUP: starting worker generation %d", self.generation)
        self.notifier.reloading(f"starting worker generation {self.generation}")
        if not self.target:
            self._announce()

    def stop(self, graceful: bool) -> None:
        """Stop every worker: TERM (graceful) or INT (fast), then KILL past the deadline."""
        if not self._stopping:
            how = "gracefully" if graceful else "fast"
            logger.info("stopping %s", how)
            self.notifier.stopping(f"stopping {how}")
        self._stopping = True
        for worker in self.workers.values():
            self._stop_worker(worker, graceful)

    def _stop_worker(self, worker: Worker, graceful: bool = True) -> None:
        grace = self.config.graceful_timeout_seconds + 1.0 if graceful else FAST_STOP_SECONDS
        if stop_child(worker, graceful, grace):
            self._spawner.set_phase(worker, STOPPING)

    # -- workers -------------------------------------------------------------------------

    def _current(self) -> list[Worker]:
        return [
            w
            for w in self.workers.values()
            if w.generation == self.generation and not w.stopping and not w.replacing
        ]

    def _spawn_missing(self) -> None:
        missing = self.target - len(self._current())
        if missing <= 0 or time.monotonic() < self._respawn.due:
            return
        self._respawn.due = 0.0
        for _ in range(missing):
            worker = self._spawner.spawn(self.generation, self.workers.values())
            self.workers[worker.pid] = worker

    def _worker_exited(self, worker: Worker, code: int) -> None:
        close_ready_pipe(worker)
        self._spawner.release(worker)
        serving = [w for w in self.workers.values() if w.ready and not w.stopping]
        verdict = judge_exit(worker, code, self._stopping, serving, self.generation)
        if verdict is Exit.CANNOT_START:
            self.exit_code = code
            self.stop(graceful=True)
        elif verdict is Exit.RELOAD_FAILED:
            for other in self._current():
                self._stop_worker(other, graceful=False)
            failed, self.generation = self.generation, max(w.generation for w in serving)
            self.notifier.ready(f"generation {failed} could not start; {self.generation} serves")
            # A replacement that cannot start is retried slowly.
            self._respawn.died(worker.started_at)
        elif verdict is Exit.DIED:
            self._respawn.died(worker.started_at)

    def _retire_old_generations(self) -> None:
        for worker in to_retire(
            self.workers.values(), self._current(), self.target, self.generation
        ):
            self._stop_worker(worker)

    def _watch_scoreboard(self) -> None:
        """Act on what the scoreboard says: replace, scale (see pool_watch.py)."""
        if self.watch is None or self._stopping:
            return
        workers = list(self.workers.values())
        decision = self.watch.decide(workers, self._current(), self.target, time.monotonic())
        self.target = decision.target
        for pid in decision.stop:
            self._stop_worker(self.workers[pid])
        for pid in decision.replace:
            self.workers[pid].replacing = True  # a replacement starts; it stops once that serves


def _warn_overdue(worker: Worker) -> None:
    logger.warning("worker %d did not stop in time: killing it", worker.pid)
