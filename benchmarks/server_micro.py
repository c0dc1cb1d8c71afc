"""Micro-benchmark of the threaded server's own cost per request: no nginx, no wrk.

    python3 benchmarks/server_micro.py [--requests N] [--repeat N] [--keepalive] [--threads N]

``--requests`` Unix-socket clients connect to a real fcgigw ``Server`` (hello app, in its own
process) and each writes nginx's usual GET (protocol_micro.NGINX_PARAMS) before the server
starts; the server then answers them all. With ``--keepalive`` the requests come on 32
connections with FCGI_KEEP_CONN, the next one sent as soon as the last response arrived.
Reported: the server process's CPU time (all its threads) per request. The figure to compare
before and after a change of the hot path: it moves with the server's code only, where req/s
through nginx moves with the whole machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from protocol_micro import nginx_request

from fcgigw.config import Config
from fcgigw.server.server import Server

SELF = __file__
END_REQUEST_TAIL = bytes((1, 3))  # version, FCGI_END_REQUEST: the last record of a response


def hello(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])  # type: ignore[operator]
    return [b"Hello, world!"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _answered(data: bytes | bytearray) -> bool:
    # END_REQUEST's 8-byte header and 8-byte body end every response.
    return len(data) >= 16 and data[-16:-14] == END_REQUEST_TAIL


def serve(listener_fd: int, threads: int) -> None:
    """The server process: serve on the inherited listener; on a line from stdin, print the
    CPU seconds spent since serving began, and stop."""
    listener = socket.socket(fileno=listener_fd)
    server = Server(hello, Config(app="x", threads=threads), listeners=[listener])
    before = _cpu()
    server.start()
    sys.stdin.readline()
    print(_cpu() - before, flush=True)
    server.stop(graceful=False)


def _start_server(listener: socket.socket, threads: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, SELF, "--serve-fd", str(listener.fileno()), "--threads", str(threads)],
        pass_fds=[listener.fileno()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _stop_server(process: subprocess.Popen[str]) -> float:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    spent = float(process.stdout.readline())
    process.wait(10)
    return spent


def new_connections(path: str, requests: int, threads: int) -> float:
    """Server CPU µs per request, each on its own connection (nginx without keepalive)."""
    request = nginx_request(flags=0)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(requests + 16)
    clients = []
    for _ in range(requests):
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.sendall(request)
        clients.append(client)
    process = _start_server(listener, threads)
    for client in clients:  # each ends with the server's FIN
        while client.recv(65536):
            pass
    spent = _stop_server(process)
    for client in clients:
        client.close()
    listener.close()
    return spent / requests * 1e6


def kept_connections(path: str, requests: int, threads: int, connections: int = 32) -> float:
    """Server CPU µs per request on ``connections`` kept connections (nginx keepalive)."""
    request = nginx_request(flags=1)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    process = _start_server(listener, threads)
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytearray] = {}
    for _ in range(connections):
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        selector.register(client, selectors.EVENT_READ)
        received[client] = bytearray()
    sent = answered = 0
    for client in received:
        client.sendall(request)
        sent += 1
    while answered < requests:
        for key, _ in selector.select():
            client = key.fileobj  # type: ignore[assignment]
            data = received[client]  # type: ignore[index]
            data += client.recv(65536)  # type: ignore[union-attr]
            if _answered(data):
                data.clear()
                answered += 1
                if sent < requests:
                    client.sendall(request)  # type: ignore[union-attr]
                    sent += 1
    spent = _stop_server(process)
    for client in received:
        client.close()
    listener.close()
    return spent / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--keepalive", action="store_true")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("fcgigw").setLevel(logging.ERROR)
    if args.serve_fd is not None:
        serve(args.serve_fd, args.threads)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.repeat):
            path = os.path.join(tmp, f"s{n}")
            if args.keepalive:
                results.append(kept_connections(path, args.requests, args.threads))
            else:
                results.append(new_connections(path, args.requests, args.threads))
            time.sleep(0.1)
    mode = "kept connections" if args.keepalive else "new connections"
    print(
        f"{mode}: server CPU µs per request: median {statistics.median(results):.1f}, "
        f"best {min(results):.1f} ({args.repeat} x {args.requests}, {args.threads} threads)"
    )


if __name__ == "__main__":
    main()
