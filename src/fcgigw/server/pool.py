"""The thread pool: leader/follower over one poller of listeners and parked connections.

One thread at a time (the leader) waits in the poller; it takes one piece of work, hands the
leadership on, and does the work itself, so a request is served by the thread that accepted
it (no per-request thread hop) and idle keep-alive connections cost no thread. Which thread
may lead, and when another may serve too, is leadership.LeaderAdmission's to decide.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from .accept import ACCEPT_BATCH, ConnectionSocket, accept_one
from .leadership import LeaderAdmission

logger = logging.getLogger("fcgigw.server")

Work = Callable[[], None]


_get_ident: Final = threading.get_ident
_monotonic: Final = time.monotonic
_DEFAULT_TIMEOUT: Final = socket.getdefaulttimeout
_PARKED_EVENTS: Final = int(select.EPOLLIN | select.EPOLLONESHOT)  # read once, per request


class Parkable(Protocol):
    """A connection the poller watches until it is readable once."""

    sock: ConnectionSocket
    #: Registered with the poller already (it stays registered, disabled, between parks).
    polled: bool

    def readable(self) -> None: ...


#: Called in the accepting thread for each new connection; returns the work that serves it
#: (None: refused). It runs before stop_accepting() can return, so once that has returned
#: the server knows every connection it will ever have.
OnAccept = Callable[[ConnectionSocket, int, object], Work | None]


class _Poller:
    """Readiness of the listeners (watched until stopped) and of parked connections
    (watched once: EPOLLONESHOT, so a kept connection costs one epoll_ctl per request)."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._listeners: dict[int, socket.socket] = {}
        #: fd -> the parked connection. A connection closed since it was reported stays here
        #: (the kernel forgot it) until its fd number is parked again; it is never reported.
        self._parked: dict[int, Parkable] = {}

    def add_listener(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        self._listeners[fd] = sock
        self._epoll.register(fd, select.EPOLLIN)

    def remove_listeners(self) -> list[socket.socket]:
        listeners = list(self._listeners.values())
        for fd in self._listeners:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass
        self._listeners.clear()
        return listeners

    def park(self, connection: Parkable) -> None:
        # Whether to register or modify is the connection's to say, not its fd number's: a
        # web server that closes kept connections (nginx beyond its `keepalive` count) has
        # each fd number come back as a new socket, and a modify refused for it is an
        # exception raised and caught per connection.
        fd = connection.sock.fileno()
        self._parked[fd] = connection
        events = _PARKED_EVENTS
        if connection.polled:
            try:
                self._epoll.modify(fd, events)  # the kernel kept it, disabled
                return
            except FileNotFoundError:
                pass  # not expected: the socket is open, so its registration stays
        connection.polled = True
        try:
            self._epoll.register(fd, events)
        except FileExistsError:  # not expected: a closed socket's fd is unregistered
            self._epoll.modify(fd, events)

    def wait(self) -> tuple[list[socket.socket], list[Parkable], bool]:
        """Block until something is ready: listeners, connections, and whether the wake-up
        socket (registered as a listener-less fd) fired."""
        while True:
            try:
                events = self._epoll.poll()
            except InterruptedError:
                continue
            listeners, connections, woken = [], [], False
            for fd, _ in events:
                listener = self._listeners.get(fd)
                if listener is not None:
                    listeners.append(listener)
                elif fd in self._parked:
                    connections.append(self._parked.pop(fd))
                else:
                    woken = True
            return listeners, connections, woken

    def register_wakeup(self, sock: socket.socket) -> None:
        self._epoll.register(sock.fileno(), select.EPOLLIN)

    def close(self) -> None:
        self._epoll.close()


class Dispatcher:
    """Hands out work: new connections, parked connections that became readable, and work
    submitted by other threads."""

    def __init__(
        self,
        listeners: list[socket.socket],
        on_accept: OnAccept,
        threads: int,
        *,
        share_backlog: bool = False,
    ) -> None:
        self._poller = _Poller()
        self._threads = threads
        #: Other processes accept on the same listeners (a supervisor's workers).
        self._share_backlog = share_backlog
        self._on_accept = on_accept
        #: Held while accepting: stop_accepting() waits for an accept batch under way.
        self._accept_lock = threading.Lock()
        self._accepting = True
        self._leader = threading.Lock()
        self._ready: deque[Work] = deque()
        self._admission = LeaderAdmission(self._ready)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._poller.register_wakeup(self._wake_reader)
        self._kinds: dict[socket.socket, tuple[int, int]] = {}
        for listener in listeners:
            listener.setblocking(False)
            self._poller.add_listener(listener)
            # Accepted sockets block, whatever the listener does (socket.accept's rule).
            self._kinds[listener] = (int(listener.family), int(listener.type))

    def next_work(self, *, finished: bool = False) -> Work | None:
        """Block until this thread may serve and there is work; None once stopped.
        ``finished``: the caller has just finished its previous work."""
        admission = self._admission
        if not admission.at_once(finished) and not admission.wait():
            return None
        work = None
        try:
            with self._leader:
                ready = self._ready
                while not ready and not admission.stopping:
                    listeners, connections, woken = self._poller.wait()
                    for listener in listeners:
                        self._accept(listener)
                    ready.extend(connection.readable for connection in connections)
                    if woken:
                        self._drain_wakeups()
                work = ready.popleft() if ready else None
        finally:
            with admission.lock:  # the leadership handed back inline: no call per request
                admission.leader_taken = False
                if work is not None:
                    admission.serving[_get_ident()] = _monotonic()
        return work

    def _accept(self, listener: socket.socket) -> None:
        """Take the connections waiting on ``listener``, up to ACCEPT_BATCH; when the backlog
        is shared, only as many as threads are free to serve them (the leader included)."""
        family, kind = self._kinds[listener]
        batch = ACCEPT_BATCH
        if self._share_backlog:
            free = self._threads - len(self._admission.serving) - len(self._ready)
            batch = max(1, min(free, ACCEPT_BATCH))
        on_accept = self._on_accept
        ready = self._ready
        with self._accept_lock:
            if not self._accepting:
                return  # the listener is being closed
            for _ in range(batch):
                accepted = accept_one(listener, family, kind)
                if accepted is None:
                    return
                sock, address = accepted
                if _DEFAULT_TIMEOUT():
                    sock.setblocking(True)  # as socket.accept() does: served sockets block
                work = on_accept(sock, family, address)
                if work is not None:
                    ready.append(work)

    def park(self, connection: Parkable) -> None:
        """Watch a connection until it is readable once; it comes back as work."""
        self._poller.park(connection)

    def submit(self, work: Work) -> None:
        """Queue work for the next free thread."""
        self._ready.append(work)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass

    def stop_accepting(self) -> list[socket.socket]:
        """Stop watching the listeners; the caller closes them. Once this returns, no
        connection is accepted any more, and on_accept has seen every one that was."""
        with self._accept_lock:
            self._accepting = False
            listeners = self._poller.remove_listeners()
        self._wake()
        return listeners

    def stop(self) -> None:
        """Let the threads go once the queued work is done."""
        self._admission.stop()
        self._wake()

    def close(self) -> None:
        """Free the poller and the wake-up pair, once no thread uses them (after stop() and
        the threads' join): an embedding application may start servers again and again."""
        self._poller.close()
        self._wake_reader.close()
        self._wake_writer.close()


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
        deadline = None if timeout is None else _monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - _monotonic()))
        return not any(thread.is_alive() for thread in self._threads)
