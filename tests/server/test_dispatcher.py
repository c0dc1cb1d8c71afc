"""The threaded backend's Dispatcher and a graceful stop: a connection the leader has just
accepted must be known to the server before stop_accepting() returns. Otherwise the stop can
see no connections, let the threads go, and drop that connection unanswered (nginx: a 502
during a reload; CI caught it once in 1,349 requests)."""

from __future__ import annotations

import socket
import threading

from fcgigw.server.pool import Dispatcher, Work

TIMEOUT = 10


def test_stop_accepting_waits_for_a_connection_being_accepted() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    entered, release = threading.Event(), threading.Event()
    known: list[socket.socket] = []

    def on_accept(sock: socket.socket, family: int, address: object) -> Work | None:
        entered.set()
        release.wait(TIMEOUT)  # the server is slow to register it
        known.append(sock)
        return sock.close

    dispatcher = Dispatcher([listener], on_accept, threads=1)
    leader = threading.Thread(target=dispatcher.next_work, daemon=True)
    leader.start()
    client = socket.create_connection(listener.getsockname())
    try:
        assert entered.wait(TIMEOUT), "the connection was never accepted"
        stopped = threading.Event()
        stopper = threading.Thread(
            target=lambda: (dispatcher.stop_accepting(), stopped.set()), daemon=True
        )
        stopper.start()
        assert not stopped.wait(0.3), "stop_accepting() returned before on_accept finished"
        release.set()
        assert stopped.wait(TIMEOUT)
        assert len(known) == 1  # once stop_accepting() returned, the server knew it
    finally:
        release.set()
        leader.join(TIMEOUT)
        dispatcher.stop()
        dispatcher.close()
        for sock in known:
            sock.close()
        client.close()
        listener.close()


def test_no_connection_is_accepted_once_stop_accepting_returned() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[object] = []
    dispatcher = Dispatcher([listener], lambda s, f, a: accepted.append(a) or s.close, threads=1)
    dispatcher.stop_accepting()
    client = socket.create_connection(listener.getsockname())  # queued in the backlog
    try:
        dispatcher._accept(listener)  # a leader that was already woken for it
        assert accepted == []
    finally:
        dispatcher.stop()
        dispatcher.close()
        client.close()
        listener.close()


class _Parked:
    """A connection as the poller sees it (pool.Parkable)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.polled = False
        self.woke = threading.Event()

    def readable(self) -> None:
        self.woke.set()


def test_a_connection_on_a_closed_ones_fd_number_is_watched_and_kept_ones_again() -> None:
    """nginx closes kept connections beyond its `keepalive` count, so the next accepted
    socket often gets the fd number of one that was parked: it must be watched as the new
    socket it is, and a kept connection parked again must be woken again."""
    listener = socket.create_server(("127.0.0.1", 0))
    dispatcher = Dispatcher([listener], lambda s, f, a: None, threads=1)
    poller = dispatcher._poller
    sockets: list[socket.socket] = []
    try:
        first_end, first_peer = socket.socketpair()
        sockets += [first_end, first_peer]
        first = _Parked(first_end)
        dispatcher.park(first)
        number = first_end.fileno()
        first_end.close()
        again_end, again_peer = socket.socketpair()
        sockets += [again_end, again_peer]
        assert again_end.fileno() == number  # the lowest free number
        again = _Parked(again_end)
        for _ in range(3):  # the first park registers it, the next ones re-arm it
            dispatcher.park(again)
            again_peer.send(b"x")
            _, connections, _ = poller.wait()
            assert connections == [again]
            again_end.recv(1)
    finally:
        dispatcher.stop()
        dispatcher.close()
        for sock in sockets:
            sock.close()
        listener.close()
