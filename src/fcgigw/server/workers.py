"""One worker of the --workers supervisor: the record the supervisor keeps of it, what the
forked worker does before it serves, and what its exit means to the supervisor."""

from __future__ import annotations

import enum
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .forked import Forked, fork_with_ready_pipe, leave_parent
from .scoreboard import Scoreboard, Seat
from .signal_inbox import SignalInbox, child_exit_code, stop_when_orphaned

logger = logging.getLogger("fcgigw.supervisor")

#: Runs in a freshly forked worker: load the app, serve on the listeners, call the readiness
#: callback once serving, report to its scoreboard seat (if any); returns the exit code.
WorkerMain = Callable[[list[socket.socket], Callable[[], None], Seat | None], int]

#: Worker exit codes meaning the application cannot start: it cannot be imported
#: (cli.EXIT_APP_LOAD) or its lifespan startup failed (cli.EXIT_LIFESPAN). Retrying is futile.
START_FAILURES = (3, 5)
#: The supervisor's business, not a worker's: a worker ignores them.
WORKER_IGNORES = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGQUIT)


@dataclass(kw_only=True)
class Worker(Forked):
    """One worker process as the supervisor tracks it."""

    generation: int
    slot: int | None = None  # its scoreboard slot
    replacing: bool = False  # stuck or too big: stops once its replacement serves


class Exit(enum.Enum):
    """What a worker's exit asks of the supervisor."""

    GONE = "gone"  # stopped, or done: replaced at once if still wanted
    DIED = "died"  # replaced after the back-off
    CANNOT_START = "cannot start"  # no worker serves and none can start: stop
    RELOAD_FAILED = "reload failed"  # keep the generation that serves; retry slowly


def judge_exit(
    worker: Worker, code: int, stopping: bool, serving: Sequence[Worker], generation: int
) -> Exit:
    """What ``worker``'s exit with ``code`` means (logged), ``serving`` being the workers that
    serve and are not stopping, ``generation`` the current one."""
    if worker.stopping or stopping:
        logger.info("worker %d stopped (exit %d)", worker.pid, code)
        return Exit.GONE
    if code == 0:  # max_requests served, or stopped by someone else's SIGTERM
        logger.info("worker %d exited; replacing it", worker.pid)
        return Exit.GONE
    if not worker.ready and code in START_FAILURES:
        if not serving:
            logger.error("the application cannot start (exit %d); stopping", code)
            return Exit.CANNOT_START
        if worker.generation == generation:
            # A reload whose code cannot start: keep serving with the generation that does.
            logger.error("reload failed (exit %d): keeping the running workers", code)
            return Exit.RELOAD_FAILED
    logger.error("worker %d died (exit %d); replacing it", worker.pid, code)
    return Exit.DIED


def to_retire(
    workers: Iterable[Worker], current: Sequence[Worker], target: int, generation: int
) -> list[Worker]:
    """Once the ``current`` generation all serve, the older workers, and those being replaced,
    which stop gracefully (logged)."""
    if len(current) < target or not all(w.ready for w in current):
        return []
    retired = []
    for worker in workers:
        if worker.stopping:
            continue
        if worker.replacing:
            logger.info("stopping worker %d: its replacement serves", worker.pid)
            retired.append(worker)
        elif worker.generation != generation:
            logger.info("stopping worker %d (generation %d)", worker.pid, worker.generation)
            retired.append(worker)
    return retired


class Spawner:
    """Forks the supervisor's workers, each with a scoreboard seat when there is a board (and
    keeps the seats up to date); each forgets the supervisor's state before it serves."""

    def __init__(
        self,
        worker_main: WorkerMain,
        listeners: list[socket.socket],
        board: Scoreboard | None,
        inbox: SignalInbox,
    ) -> None:
        self.worker_main = worker_main
        self.listeners = listeners
        self.board = board
        self.inbox = inbox

    def spawn(self, generation: int, siblings: Iterable[Worker]) -> Worker:
        """Fork a worker of ``generation``; ``siblings``' pipes are closed in it."""
        board = self.board
        slot = board.claim(0, generation) if board is not None else None
        seat = Seat(board, slot) if board is not None and slot is not None else None
        pid, ready_read = fork_with_ready_pipe(
            lambda ready_write: self._worker_process(ready_write, seat, siblings)
        )
        if seat is not None:
            seat.board.set_pid(seat.index, pid)
        elif board is not None:
            logger.warning("worker %d has no scoreboard slot: the status page omits it", pid)
        return Worker(pid=pid, generation=generation, ready_fd=ready_read, slot=slot)

    def set_phase(self, worker: Worker, phase: int) -> None:
        """Show ``worker``'s phase on its seat, if it has one."""
        if self.board is not None and worker.slot is not None:
            self.board.set_phase(worker.slot, phase)

    def release(self, worker: Worker) -> None:
        """``worker`` has exited: its seat is free."""
        if self.board is not None and worker.slot is not None:
            self.board.release(worker.slot)

    def _worker_process(
        self, ready_write: int, seat: Seat | None, siblings: Iterable[Worker]
    ) -> int:
        """In the forked worker: forget the supervisor's state, serve, return the exit code."""
        supervisor_pid = os.getppid()
        leave_parent(self.inbox, WORKER_IGNORES, siblings)
        stop_when_orphaned(supervisor_pid, "supervisor")

        def ready() -> None:
            os.write(ready_write, b"1")
            os.close(ready_write)

        return child_exit_code(
            lambda: self.worker_main(self.listeners, ready, seat),
            logger,
            f"worker {os.getpid()} failed",
        )
