"""The main process for ``--workers N``: forks workers that share the listening sockets, keeps
N of them alive, reloads them on SIGHUP without dropping a request, and stops them cleanly.

The supervisor never imports the application: each worker imports it after the fork, so a
reload picks up new code, and a crash in the app cannot take the supervisor down.

Signals (gunicorn's set): TERM stops gracefully (workers finish in-flight requests, bounded by
graceful_timeout_seconds); INT and QUIT stop fast; HUP starts a new generation of workers
and stops the old one only once the new one serves (if it cannot start, the old one stays);
TTIN and TTOU add or remove a worker. Handlers only record the signal; the loop acts on it.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import Config
from .pool_watch import PoolWatch, make_scoreboard
from .process_manager import ProcessManager
from .scoreboard import SERVING, STOPPING, Seat
from .signal_inbox import (
    SignalInbox,
    child_exit_code,
    reaped,
    signal_process,
    stop_when_orphaned,
)

logger = logging.getLogger("fcgigw.supervisor")

#: Runs in a freshly forked worker: load the app, serve on the listeners, call the readiness
#: callback once serving, report to its scoreboard seat (if any); returns the exit code.
WorkerMain = Callable[[list[socket.socket], Callable[[], None], Seat | None], int]

#: Worker exit codes meaning the application cannot start: it cannot be imported
#: (cli.EXIT_APP_LOAD) or its lifespan startup failed (cli.EXIT_LIFESPAN). Retrying is futile.
START_FAILURES = (3, 5)
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


@dataclass
class Worker:
    """One worker process as the supervisor tracks it."""

    pid: int
    generation: int
    ready_fd: int  # read end of the pipe the worker writes one byte to once it serves
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    ready_at: float = 0.0
    stopping: bool = False
    kill_at: float | None = None
    slot: int | None = None  # its scoreboard slot
    replacing: bool = False  # stuck or too big: stops once its replacement serves


class Supervisor:
    """Keeps the workers the process manager wants serving (``config.workers`` when it is
    static); see the module docstring for signals."""

    def __init__(self, config: Config, listeners: list[socket.socket], worker_main: WorkerMain):
        self.config = config
        self.listeners = listeners
        self.worker_main = worker_main
        self.manager = ProcessManager(config)
        self.target = self.manager.initial
        self.workers: dict[int, Worker] = {}
        self.generation = 0
        self.exit_code = 0
        self._stopping = False
        self._respawn_delay = RESPAWN_DELAY_SECONDS[0]
        self._respawn_at = 0.0
        self._inbox = SignalInbox(_HANDLED)
        #: Shared with the workers, when a feature reads it (the status page, …).
        self.board = make_scoreboard(config, self.manager)
        self.watch = PoolWatch(self.board, config, self.manager) if self.board else None

    # -- running -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; the exit code for the process."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the supervisor (workers > 0) must run in the main thread")
        self._inbox.install()
        logger.info(
            "supervisor %d starting %d workers (%s)", os.getpid(), self.target, self.manager.name
        )
        try:
            self._spawn_missing()
            while self.workers or not self._stopping:
                self._wait_for_events()
                self._handle_signals()
                self._reap()
                self._enforce_deadlines()
                self._watch_scoreboard()
                if not self._stopping:
                    self._retire_old_generations()
                    self._spawn_missing()
        finally:
            self._inbox.restore()
            self._inbox.close()
        logger.info("supervisor stopped")
        return self.exit_code

    def _wait_for_events(self) -> None:
        pending = [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
        listening = self._listeners_to_watch()
        timeout = TICK_SECONDS
        if self._respawn_at:
            timeout = max(0.0, min(timeout, self._respawn_at - time.monotonic()))
        try:
            readable, _, _ = select.select(
                [self._inbox.wakeup, *pending, *listening], [], [], timeout
            )
        except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
            return
        for fd in readable:
            if fd == self._inbox.wakeup:
                self._inbox.clear_wakeup()
            elif fd in listening:
                self.target = self.manager.connection_waiting(self.target)
            else:
                self._mark_ready(fd)

    def _listeners_to_watch(self) -> list[int]:
        """On demand with no worker: the listeners, whose readability starts one (the
        supervisor never accepts; the worker takes the connection)."""
        if not self.manager.on_demand or self._stopping or self.target or self._current():
            return []
        return [sock.fileno() for sock in self.listeners]

    def _mark_ready(self, fd: int) -> None:
        worker = next(w for w in self.workers.values() if w.ready_fd == fd)
        try:
            data = os.read(fd, 1)
        except OSError:
            data = b""
        if data:
            worker.ready = True
            worker.ready_at = time.monotonic()
            if self.board is not None and worker.slot is not None:
                self.board.set_phase(worker.slot, SERVING)
            logger.info("worker %d serving (generation %d)", worker.pid, worker.generation)
        # EOF without the byte: the worker died before serving; _reap handles it.
        os.close(fd)
        worker.ready_fd = -1

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
            elif signum == signal.SIGTTIN and not self._stopping:
                self.target += 1
                logger.info("SIGTTIN: %d workers", self.target)
            elif signum == signal.SIGTTOU and not self._stopping and self.target > 1:
                self.target -= 1
                logger.info("SIGTTOU: %d workers", self.target)
                self._retire_surplus()

    def reload(self) -> None:
        """A new generation of workers; the old one stops once the new one serves."""
        self.generation += 1
        logger.info("SIGHUP: starting worker generation %d", self.generation)

    def stop(self, graceful: bool) -> None:
        """Stop every worker: TERM (graceful) or INT (fast), then KILL past the deadline."""
        if not self._stopping:
            logger.info("stopping %s", "gracefully" if graceful else "fast")
        self._stopping = True
        for worker in self.workers.values():
            self._stop_worker(worker, graceful)

    def _stop_worker(self, worker: Worker, graceful: bool = True) -> None:
        grace = self.config.graceful_timeout_seconds + 1.0 if graceful else FAST_STOP_SECONDS
        deadline = time.monotonic() + grace
        if worker.stopping and worker.kill_at is not None and worker.kill_at <= deadline:
            return
        worker.stopping = True
        worker.kill_at = deadline
        if self.board is not None and worker.slot is not None:
            self.board.set_phase(worker.slot, STOPPING)
        signal_process(worker.pid, signal.SIGTERM if graceful else signal.SIGINT)

    # -- workers -------------------------------------------------------------------------

    def _current(self) -> list[Worker]:
        return [
            w
            for w in self.workers.values()
            if w.generation == self.generation and not w.stopping and not w.replacing
        ]

    def _spawn_missing(self) -> None:
        missing = self.target - len(self._current())
        if missing <= 0 or time.monotonic() < self._respawn_at:
            return
        self._respawn_at = 0.0
        for _ in range(missing):
            self._spawn()

    def _spawn(self) -> None:
        board = self.board
        slot = board.claim(0, self.generation) if board is not None else None
        seat = Seat(board, slot) if board is not None and slot is not None else None
        ready_read, ready_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is collected by its own exit
            os.close(ready_read)
            os._exit(self._worker_process(ready_write, seat))
        os.close(ready_write)
        if seat is not None:
            seat.board.set_pid(seat.index, pid)
        elif board is not None:
            logger.warning("worker %d has no scoreboard slot: the status page omits it", pid)
        self.workers[pid] = Worker(pid, self.generation, ready_read, slot=slot)

    def _worker_process(self, ready_write: int, seat: Seat | None) -> int:
        """In the forked child: forget the supervisor's state, serve, return the exit code."""
        supervisor_pid = os.getppid()
        self._inbox.restore()
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_IGN)  # the supervisor's business, not a worker's
        self._inbox.close()
        for worker in self.workers.values():
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
        stop_when_orphaned(supervisor_pid, "supervisor")

        def ready() -> None:
            os.write(ready_write, b"1")
            os.close(ready_write)

        return child_exit_code(
            lambda: self.worker_main(self.listeners, ready, seat),
            logger,
            f"worker {os.getpid()} failed",
        )

    def _reap(self) -> None:
        for worker, code in reaped(self.workers):
            self._worker_exited(worker, code)

    def _worker_exited(self, worker: Worker, code: int) -> None:
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
        if self.board is not None and worker.slot is not None:
            self.board.release(worker.slot)
        if worker.stopping or self._stopping:
            logger.info("worker %d stopped (exit %d)", worker.pid, code)
            return
        if code == 0:  # max_requests served, or stopped by someone else's SIGTERM
            logger.info("worker %d exited; replacing it", worker.pid)
            return
        if not worker.ready and code in START_FAILURES:
            serving = [w for w in self.workers.values() if w.ready and not w.stopping]
            if not serving:
                logger.error("the application cannot start (exit %d); stopping", code)
                self.exit_code = code
                self.stop(graceful=True)
                return
            if worker.generation == self.generation:
                # A reload whose code cannot start: keep serving with the generation that does.
                logger.error("reload failed (exit %d): keeping the running workers", code)
                for other in self._current():
                    self._stop_worker(other, graceful=False)
                self.generation = max(w.generation for w in serving)
                self._back_off(worker)  # a replacement that cannot start is retried slowly
                return
        logger.error("worker %d died (exit %d); replacing it", worker.pid, code)
        self._back_off(worker)

    def _back_off(self, worker: Worker) -> None:
        if time.monotonic() - worker.started_at > STABLE_AFTER_SECONDS:
            self._respawn_delay = RESPAWN_DELAY_SECONDS[0]
        self._respawn_at = time.monotonic() + self._respawn_delay
        self._respawn_delay = min(self._respawn_delay * 2, RESPAWN_DELAY_SECONDS[1])

    def _retire_old_generations(self) -> None:
        """Once the current generation all serve, older workers, and those being replaced,
        stop gracefully."""
        current = self._current()
        if len(current) < self.target or not all(w.ready for w in current):
            return
        for worker in self.workers.values():
            if worker.stopping:
                continue
            if worker.replacing:
                logger.info("stopping worker %d: its replacement serves", worker.pid)
                self._stop_worker(worker)
            elif worker.generation != self.generation:
                logger.info("stopping worker %d (generation %d)", worker.pid, worker.generation)
                self._stop_worker(worker)

    def _retire_surplus(self) -> None:
        for worker in self._current()[self.target :]:
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

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self.workers.values():
            if worker.kill_at is not None and now >= worker.kill_at:
                logger.warning("worker %d did not stop in time: killing it", worker.pid)
                signal_process(worker.pid, signal.SIGKILL)
                worker.kill_at = None
