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
