"""The thread pool: leader/follower over one selector of listeners and idle connections.

One thread at a time (the leader) waits in select(); it takes one piece of work, hands the
leadership on, and does the work itself, so a request is served by the thread that accepted
it (no per-request thread hop) and idle keep-alive connections cost no thread.

Threads contending for the GIL cost more than they give when the app is CPU-bound (measured
behind nginx: 1 thread 11.0k req/s, 2 threads 8.3k, 4 threads 4.5k). So another thread is
admitted to serve only when every serving thread has been busy for ADMIT_AFTER_SECONDS, i.e.
when the app is waiting on I/O; a fast app is served by one thread, a slow one by many.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .peers import PeerAllowlist

logger = logging.getLogger("fcgigw.server")

Work = Callable[[], None]

#: How long every serving thread must have been busy before another thread may serve too.
ADMIT_AFTER_SECONDS = 0.002
#: How often the waiting poller looks when nobody is serving (an idle server stays quiet).
IDLE_POLL_SECONDS = 0.05


def _poll_interval(now: float, newest: float | None) -> float:
    """When the admission poller should look again."""
    if newest is None:
        return IDLE_POLL_SECONDS
    age = now - newest
    return ADMIT_AFTER_SECONDS if age >= ADMIT_AFTER_SECONDS else ADMIT_AFTER_SECONDS - age


OnAccept = Callable[[socket.socket, str], Work]
OnResume = Callable[[object], Work]


class _Watched:
    """Selector data for a connection whose owner is busy in a long request."""

    __slots__ = ("connection",)

    def __init__(self, connection: Any) -> None:
        self.connection = connection


class Dispatcher:
    """Hands out work: new connections, idle connections that became readable, and
    requests submitted by other threads."""

    def __init__(self, listeners: list[socket.socket], allowlist: PeerAllowlist) -> None:
        self._selector = selectors.DefaultSelector()
        self._allowlist = allowlist
        self._leader = threading.Lock()
        self._admission = threading.Condition()
        self._serving: dict[int, float] = {}
        self._leader_taken = False
        self._poller_waiting = False
        self._watch_lock = threading.Lock()
        self._busy_connections: dict[Any, float] = {}
        self._watched: set[Any] = set()
        self._ready: deque[Work] = deque()
        self._stopping = False
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._listeners = listeners
        self.on_accept: OnAccept | None = None
        self.on_resume: OnResume | None = None
        for listener in listeners:
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, listener)
        # epoll accepts registrations from other threads while one waits; others need a wake-up.
        self._needs_wakeup_to_park = not isinstance(self._selector, selectors.EpollSelector)

    def next_work(self) -> Work | None:
        """Block until this thread may serve and there is work; None once stopping."""
        if not self._admit():
            return None
        try:
            with self._leader:
                self._watch_long_requests()
                while not self._ready and not self._stopping:
                    for key, _ in self._selector.select():
                        self._take(key)
                work = self._ready.popleft() if self._ready else None
        finally:
            with self._admission:
                self._leader_taken = False
                if work is not None:
                    self._serving[threading.get_ident()] = time.monotonic()
        return work

    def work_done(self) -> None:
        """The calling thread finished its work (it will ask for more at once: no wake-up)."""
        with self._admission:
            self._serving.pop(threading.get_ident(), None)

    def _admit(self) -> bool:
        """Wait until this thread may lead: nobody leads, and nobody is serving or all who
        serve have been at it for ADMIT_AFTER_SECONDS. One waiter polls; the rest sleep."""
        with self._admission:
            polling = False
            while True:
                if self._stopping and not self._ready:
                    self._admission.notify_all()
                    return False
                now = time.monotonic()
                newest = max(self._serving.values(), default=None)
                long_running = newest is not None and now - newest >= ADMIT_AFTER_SECONDS
                if not self._leader_taken and (newest is None or long_running):
                    break
                if polling or not self._poller_waiting:
                    polling = self._poller_waiting = True
                    if long_running:
                        # The leader is waiting in select(): make it see the busy connections.
                        self._watch_long_requests(wake_leader=True)
                    self._admission.wait(_poll_interval(now, newest))
                else:
                    self._admission.wait()
            self._leader_taken = True
            if polling:
                self._poller_waiting = False
                self._admission.notify()  # another waiter takes over the polling
            return True

    # -- connections busy in a long request (BusyWatch for ServedConnection) ----------------

    def started(self, connection: Any) -> None:
        """The owner of a kept connection starts running a request inline."""
        with self._watch_lock:
            self._busy_connections[connection] = time.monotonic()

    def finished(self, connection: Any) -> None:
        """The owner is back: it reads the connection itself again."""
        with self._watch_lock:
            self._busy_connections.pop(connection, None)
            self._unwatch(connection)

    def _unwatch(self, connection: Any) -> None:
        if connection in self._watched:
            self._watched.discard(connection)
            try:
                self._selector.unregister(connection.sock)
            except (KeyError, ValueError):
                pass  # already taken by _take, or the socket is closed

    def _watch_long_requests(self, *, wake_leader: bool = False) -> None:
        """Watch connections whose owner has been in the app for ADMIT_AFTER_SECONDS: records
        arriving there (a multiplexed BEGIN_REQUEST, an ABORT) are read by the pool. Only the
        admission poller or a thread admitted past a busy one gets here, so fast requests never
        pay for it."""
        now = time.monotonic()
        changed = False
        with self._watch_lock:
            for connection, since in self._busy_connections.items():
                if connection in self._watched or now - since < ADMIT_AFTER_SECONDS:
                    continue
                changed = True
                self._watched.add(connection)
                if connection.protocol.buffered_bytes:
                    # Records already read from the socket (they came with the first request's):
                    # epoll will not report them, so look at them now.
                    self._unwatch_later(connection)
                else:
                    self._selector.register(
                        connection.sock, selectors.EVENT_READ, _Watched(connection)
                    )
        if changed and wake_leader:
            self._wake()

    def _unwatch_later(self, connection: Any) -> None:
        self._watched.discard(connection)
        self._ready.append(lambda: self._read_watched(connection))

    def _read_watched(self, connection: Any) -> None:
        connection.read_available()
        with self._watch_lock:
            if connection in self._busy_connections and connection not in self._watched:
                self._watched.add(connection)
                self._selector.register(connection.sock, selectors.EVENT_READ, _Watched(connection))

    def _take(self, key: selectors.SelectorKey) -> None:
        if isinstance(key.data, _Watched):
            connection = key.data.connection
            with self._watch_lock:
                self._unwatch(connection)
            self._ready.append(lambda: self._read_watched(connection))
        elif key.data is None:
            try:
                while self._wake_reader.recv(4096):
                    pass
            except BlockingIOError:
                pass
        elif isinstance(key.data, socket.socket):
            self._accept(key.data)
        else:
            self._selector.unregister(key.fileobj)
            assert self.on_resume is not None  # set by Server before threads start
            self._ready.append(self.on_resume(key.data))

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another process or thread took it
        except OSError as error:
            logger.error("accept failed on %s: %s", listener.getsockname(), error)
            return
        family = listener.family  # the same; socket.family builds an enum on every access
        if not self._allowlist.allows(family, address):
            logger.warning("refused connection from %s: not in --allow-from", address[0])
            sock.close()
            return
        peer = _peer_name(family, address)
        if family != socket.AF_UNIX:
            # Responses are written whole; don't let Nagle hold the last segment back.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self.on_accept is not None  # set by Server before threads start
        self._ready.append(self.on_accept(sock, peer))

    def park(self, sock: socket.socket, connection: object) -> None:
        """Watch an idle keep-alive connection; it comes back through on_resume."""
        self._selector.register(sock, selectors.EVENT_READ, connection)
        if self._needs_wakeup_to_park:
            self._wake()

    def submit(self, work: Work) -> None:
        """Queue work for the next free thread."""
        self._ready.append(work)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def stop_accepting(self) -> list[object]:
        """Stop taking connections and return the idle ones (the caller closes them)."""
        self._stopping = True
        self._wake()
        with self._admission:
            self._admission.notify_all()
        idle = []
        for key in list(self._selector.get_map().values()):
            if key.data is not None and not isinstance(key.data, (socket.socket, _Watched)):
                idle.append(key.data)
        return idle


class WorkerThreads:
    """``count`` threads taking work from a Dispatcher until it stops."""

    def __init__(self, dispatcher: Dispatcher, count: int) -> None:
        self._dispatcher = dispatcher
        self._threads = [
            threading.Thread(target=self._run, name=f"fcgigw-{n}", daemon=True)
            for n in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (work := self._dispatcher.next_work()) is not None:
            try:
                work()
            except Exception:
                logger.exception("unexpected error in a worker thread")
            finally:
                self._dispatcher.work_done()

    def join(self, timeout: float | None) -> bool:
        """Wait for the threads; False if some were still busy at the timeout."""
        deadline = None if timeout is None else _now() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - _now()))
        return not any(thread.is_alive() for thread in self._threads)


def _now() -> float:
    return os.times().elapsed


def _peer_name(family: int, address: object) -> str:
    if family == socket.AF_UNIX:
        return "unix"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)
