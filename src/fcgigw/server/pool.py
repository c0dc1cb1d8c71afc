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
import select
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
#: Connections taken per accept readiness: nginx opens many at once without keepalive.
ACCEPT_BATCH = 16


def _poll_interval(now: float, newest: float | None) -> float:
    """When the admission poller should look again."""
    if newest is None:
        return IDLE_POLL_SECONDS
    age = now - newest
    return ADMIT_AFTER_SECONDS if age >= ADMIT_AFTER_SECONDS else ADMIT_AFTER_SECONDS - age


_DEFAULT_TIMEOUT_SET = socket.getdefaulttimeout
_get_ident = threading.get_ident
_monotonic = time.monotonic

OnAccept = Callable[[socket.socket, str], Work]
OnResume = Callable[[object], Work]


class _Watched:
    """Selector data for a connection whose owner is busy in a long request."""

    __slots__ = ("connection",)

    def __init__(self, connection: Any) -> None:
        self.connection = connection


_TAKEN = object()  # the data of a one-shot entry once reported


class _Poller:
    """Readiness of the sockets the pool watches, each with its data: the selectors module's
    job, without its per-call key objects (epoll where there is one, else poll).

    Idle connections are watched once (``arm``): reported, they are not watched any more
    until armed again. With epoll that is EPOLLONESHOT, so a kept connection costs one
    epoll_ctl per request instead of an add and a delete."""

    def __init__(self) -> None:
        self._epoll = hasattr(select, "epoll")
        self._poll: Any = select.epoll() if self._epoll else select.poll()
        #: epoll takes registrations from other threads while one waits; poll needs a wake-up.
        self.needs_wakeup = not self._epoll
        #: fd -> (socket, data, one-shot). A one-shot entry's socket may have been closed
        #: since it was reported (the kernel then forgot it): the entry stays until its fd
        #: number is used again, and is never reported.
        self._entries: dict[int, tuple[socket.socket, object, bool]] = {}
        self._read = select.EPOLLIN if self._epoll else select.POLLIN
        self._read_once = select.EPOLLIN | select.EPOLLONESHOT if self._epoll else select.POLLIN
        #: Guards a one-shot entry's hand-over: reported by wait() or claimed by claim_idle(),
        #: never both (a stop would close a connection a pool thread is serving).
        self._lock = threading.Lock()

    def register(self, sock: socket.socket, data: object) -> None:
        """Watch ``sock`` until unregistered."""
        fd = sock.fileno()
        self._entries[fd] = (sock, data, False)
        self._add(fd, self._read)

    def arm(self, sock: socket.socket, data: object) -> None:
        """Watch ``sock`` until it is reported once."""
        fd = sock.fileno()
        with self._lock:
            previous = self._entries.get(fd)
            self._entries[fd] = (sock, data, True)
        if self._epoll and previous is not None and previous[0] is sock:
            self._poll.modify(fd, self._read_once)  # re-arm: the kernel kept it, disabled
        else:
            self._add(fd, self._read_once)

    def _add(self, fd: int, events: int) -> None:
        try:
            self._poll.register(fd, events)
        except FileExistsError:
            # A connection armed once and reported, then watched or armed again: the kernel
            # kept it, disabled.
            self._poll.modify(fd, events)

    def unregister(self, sock: socket.socket) -> None:
        """Stop watching ``sock``; KeyError if it was not watched (or is closed)."""
        fd = sock.fileno()
        entry = self._entries.get(fd)
        if fd < 0 or entry is None or entry[0] is not sock or entry[1] is _TAKEN:
            raise KeyError(sock)
        del self._entries[fd]
        try:
            self._poll.unregister(fd)
        except (KeyError, OSError, ValueError):
            pass

    def wait(self) -> list[tuple[socket.socket, object]]:
        """Block until some are readable; the readable ones (each one-shot entry once)."""
        while True:
            try:
                events = self._poll.poll()
            except InterruptedError:
                continue
            entries = self._entries
            ready = []
            with self._lock:
                for fd, _ in events:
                    entry = entries.get(fd)
                    if entry is None or entry[1] is _TAKEN:
                        continue
                    sock, data, once = entry
                    if once:
                        entries[fd] = (sock, _TAKEN, True)
                        if not self._epoll:
                            self._poll.unregister(fd)
                    ready.append((sock, data))
            return ready

    def claim_idle(self) -> list[object]:
        """Take every armed entry's data, as wait() would have: none is reported after."""
        claimed = []
        with self._lock:
            for fd, (sock, data, once) in list(self._entries.items()):
                if once and data is not _TAKEN:
                    self._entries[fd] = (sock, _TAKEN, True)
                    claimed.append(data)
        return claimed


class Dispatcher:
    """Hands out work: new connections, idle connections that became readable, and
    requests submitted by other threads."""

    def __init__(self, listeners: list[socket.socket], allowlist: PeerAllowlist) -> None:
        self._poller = _Poller()
        self._allowlist = allowlist
        self._leader = threading.Lock()
        # Taken directly on the fast path (a C-level lock, no Condition method call per use).
        self._admission_lock = threading.Lock()
        self._admission = threading.Condition(self._admission_lock)
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
        self._poller.register(self._wake_reader, None)
        self._listeners = listeners
        self.on_accept: OnAccept | None = None
        self.on_resume: OnResume | None = None
        self._listener_kinds: dict[socket.socket, tuple[int, int]] = {}
        for listener in listeners:
            listener.setblocking(False)
            self._poller.register(listener, listener)
            # Accepted sockets block, whatever the listener does (socket.accept's rule).
            self._listener_kinds[listener] = (int(listener.family), int(listener.type))

    def next_work(self, *, finished: bool = False) -> Work | None:
        """Block until this thread may serve and there is work; None once stopping.
        ``finished``: the caller has just finished its previous work (it asks for more at
        once, so nobody needs waking)."""
        if not self._admit_at_once(finished) and not self._admit():
            return None
        work = None
        try:
            with self._leader:
                if self._busy_connections:
                    self._watch_long_requests()
                ready = self._ready
                while not ready and not self._stopping:
                    for sock, data in self._poller.wait():
                        self._take(sock, data)
                work = ready.popleft() if ready else None
        finally:
            with self._admission_lock:
                self._leader_taken = False
                if work is not None:
                    self._serving[_get_ident()] = _monotonic()
        return work

    def _admit_at_once(self, finished: bool) -> bool:
        """The usual case, in one lock round: nobody leads, and nobody else serves (or they
        all have been at it for ADMIT_AFTER_SECONDS). False: _admit() decides, waiting."""
        with self._admission_lock:
            serving = self._serving
            if finished:
                serving.pop(_get_ident(), None)
            if self._leader_taken or self._stopping:
                return False
            if serving and _monotonic() - max(serving.values()) < ADMIT_AFTER_SECONDS:
                return False
            self._leader_taken = True
            return True

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
                self._poller.unregister(connection.sock)
            except KeyError:
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
                    self._poller.register(connection.sock, _Watched(connection))
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
                self._poller.register(connection.sock, _Watched(connection))

    def _take(self, sock: socket.socket, data: object) -> None:
        if type(data) is _Watched:
            connection = data.connection
            with self._watch_lock:
                self._unwatch(connection)
            self._ready.append(lambda: self._read_watched(connection))
        elif data is None:
            try:
                while self._wake_reader.recv(4096):
                    pass
            except BlockingIOError:
                pass
        elif data is sock:
            self._accept(sock)
        else:  # an idle connection, armed once: it is not watched any more
            assert self.on_resume is not None  # set by Server before threads start
            self._ready.append(self.on_resume(data))

    def _accept(self, listener: socket.socket) -> None:
        """Take every connection waiting on ``listener`` (up to ACCEPT_BATCH): one select()
        then serves them all."""
        # socket.accept() turns family and type into enums three times per connection (a
        # microsecond each); the raw accept and the listener's plain ints skip that.
        family, kind = self._listener_kinds[listener]
        assert self.on_accept is not None  # set by Server before threads start
        for _ in range(ACCEPT_BATCH):
            try:
                fd, address = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return  # none left, or another process or thread took it
            except OSError as error:
                logger.error("accept failed on %s: %s", listener.getsockname(), error)
                return
            sock = socket.socket(family, kind, 0, fd)
            if _DEFAULT_TIMEOUT_SET():
                sock.setblocking(True)  # as socket.accept() does: served sockets block
            if not self._allowlist.allows(family, address):
                logger.warning("refused connection from %s: not in --allow-from", address[0])
                sock.close()
                continue
            if family != socket.AF_UNIX:
                # Responses are written whole; don't let Nagle hold the last segment back.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._ready.append(self.on_accept(sock, _peer_name(family, address)))

    def park(self, sock: socket.socket, connection: object) -> None:
        """Watch an idle keep-alive connection; it comes back through on_resume."""
        self._poller.arm(sock, connection)
        if self._poller.needs_wakeup:
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
        return self._poller.claim_idle()  # parked connections: the only armed entries


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
        next_work = self._dispatcher.next_work
        work = next_work()
        while work is not None:
            try:
                work()
            except Exception:
                logger.exception("unexpected error in a worker thread")
            work = next_work(finished=True)

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
