"""Micro-benchmark of fcgigw's server layer, per backend: server CPU per request, no nginx.

    python3 benchmarks/server_micro.py [--interface wsgi|asgi] [--keepalive] [--requests N]
                                       [--repeat N] [--threads N] [--loop L] [--src DIR]
                                       [--floor] [--heap N] [--instructions] [--profile FILE]

``--requests`` Unix-socket clients connect to a real fcgigw server in its own process and
each writes nginx's usual GET (protocol_micro.NGINX_PARAMS) before the server starts; the
server then answers them all. With ``--keepalive`` the requests come on 32 connections with
FCGI_KEEP_CONN, the next one sent as soon as the last response arrived. The server is the
threaded ``Server`` with the WSGI hello of benchmarks/apps (``--interface wsgi``, the
default) or the asyncio ``AsyncServer`` with its ASGI twin (``--interface asgi``, on uvloop
when installed). Reported: the server process's CPU time (all its threads) per request, from
the moment it serves. The figure to compare before and after a change of the hot path: it
moves with the server's code only, where req/s through nginx moves with the whole machine.
``--floor`` serves with floor.py's stand-in instead, which parses nothing and calls no
app: what any Python server spends on that loop or those sockets (fcgigw's share is the
difference). ``--src DIR`` serves with the fcgigw package in DIR (another checkout's
``src``, or a ``pip install --target`` of its compiled build) instead.

``--instructions`` counts the server's instructions per request under valgrind's callgrind
instead of timing it (slow: ~100 ms per request). On a shared machine CPU time moves by
20% from run to run; the count moves by 0.3%, so it is the yardstick for a change of a few
percent. It leaves out the kernel's share (the system calls), which timing includes.
``--profile FILE`` writes a cProfile of every server thread (use the pure build).
"""

from __future__ import annotations

import argparse
import contextlib
import asyncio
import atexit
import cProfile
import logging
import os
import pstats
import re
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fcgigw.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))  # run.py's hello apps
sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor
from asgi_apps import hello as asgi_hello
from protocol_micro import nginx_request
from wsgi_apps import hello as wsgi_hello

SELF = __file__
END_REQUEST_TAIL = bytes((1, 3))  # version, FCGI_END_REQUEST: the last record of a response


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _answered(data: bytes | bytearray) -> bool:
    # END_REQUEST's 8-byte header and 8-byte body end every response.
    return len(data) >= 16 and data[-16:-14] == END_REQUEST_TAIL


def serve(listener_fd: int, args: argparse.Namespace) -> None:
    """The server process: serve on the inherited listener; on a line from stdin, print the
    CPU seconds spent since serving began, and stop."""
    from fcgigw.config import Config  # noqa: PLC0415 (from --src when given)

    listener = socket.socket(fileno=listener_fd)
    if args.profile:
        _profile_threads(args.profile)
    # A large app's heap: what the cycle collector's full collections walk.
    ballast = [{} for _ in range(args.heap)]  # noqa: F841 (kept alive until the process ends)
    if args.floor:
        serve_floor(listener, args.interface)
        return
    config = Config(app="x", interface=args.interface, threads=args.threads, loop=args.loop)
    if args.interface == "asgi":
        serve_asgi(listener, config)
        return
    from fcgigw.server.server import Server  # noqa: PLC0415

    server = Server(wsgi_hello, config, listeners=[listener])
    before = _cpu()
    server.start()
    sys.stdin.readline()
    print(_cpu() - before, flush=True)
    server.stop(graceful=False)


def _profile_threads(path: str) -> None:
    """cProfile every thread of the server process (the loop's and the WSGI workers'), and
    write their merged stats to ``path`` at exit: ``python -m pstats path`` reads it."""
    profilers: list[cProfile.Profile] = []

    def start(*_: object) -> None:  # the first profile event of each new thread
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()  # replaces this function as the thread's profiler

    def write() -> None:
        for profiler in profilers:
            profiler.create_stats()
        pstats.Stats(*profilers).dump_stats(path)

    threading.setprofile(start)
    start()
    atexit.register(write)


def serve_asgi(listener: socket.socket, config: Config) -> None:
    """serve() for the asyncio backend: the loop runs in this thread, and a second one waits
    for the line on stdin, then stops the loop."""
    from fcgigw.server.aio import AsyncServer  # noqa: PLC0415

    server = AsyncServer(asgi_hello, config, listeners=[listener])

    def ready() -> None:  # in the loop, before it first accepts
        loop = asyncio.get_running_loop()
        loop_name = type(loop).__module__.partition(".")[0]

        def wait_for_line(before: float) -> None:
            sys.stdin.readline()
            print(_cpu() - before, loop_name, flush=True)
            loop.call_soon_threadsafe(server.request_stop, True)

        threading.Thread(target=wait_for_line, args=(_cpu(),), daemon=True).start()

    server.on_ready = ready
    server.serve_forever()


def serve_floor(listener: socket.socket, interface: str) -> None:
    """serve() with floor.py's stand-in for fcgigw: asyncio for asgi, one thread for wsgi."""
    if interface == "asgi":

        def ready(loop: asyncio.AbstractEventLoop) -> None:
            def wait_for_line(before: float) -> None:
                sys.stdin.readline()
                print(_cpu() - before, type(loop).__module__.partition(".")[0], flush=True)
                loop.call_soon_threadsafe(loop.stop)

            threading.Thread(target=wait_for_line, args=(_cpu(),), daemon=True).start()

        floor.serve_asyncio(listener, ready)
        return
    stopped = threading.Event()
    before = _cpu()
    thread = threading.Thread(target=floor.serve_blocking, args=(listener, stopped.is_set))
    thread.start()
    sys.stdin.readline()
    print(_cpu() - before, flush=True)
    stopped.set()
    thread.join()


def _start_server(listener: socket.socket, args: argparse.Namespace) -> subprocess.Popen[str]:
    options = ["--interface", args.interface, "--threads", str(args.threads), "--loop", args.loop]
    options += ["--floor"] if args.floor else []
    options += ["--heap", str(args.heap)]
    options += ["--profile", args.profile] if args.profile else []
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.src, env.get("PYTHONPATH")]))
    if args.wrapper:
        env["PYTHONHASHSEED"] = "0"  # the same dict layouts run after run
    return subprocess.Popen(
        [*args.wrapper, sys.executable, SELF, "--serve-fd", str(listener.fileno()), *options],
        pass_fds=[listener.fileno()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _stop_server(process: subprocess.Popen[str]) -> tuple[float, str]:
    """(the server's CPU seconds, its event loop's name or "" for the threaded backend)."""
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    spent, _, loop = process.stdout.readline().partition(" ")
    process.wait(10)
    return float(spent), loop.strip()


def new_connections(path: str, args: argparse.Namespace) -> tuple[float, str]:
    """Server CPU µs per request, each on its own connection (nginx without keepalive)."""
    request = nginx_request(flags=0)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(args.requests + 16)
    clients = []
    for _ in range(args.requests):
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.sendall(request)
        clients.append(client)
    process = _start_server(listener, args)
    for client in clients:  # each ends with the server's FIN
        while client.recv(65536):
            pass
    spent, loop = _stop_server(process)
    for client in clients:
        client.close()
    listener.close()
    return spent / args.requests * 1e6, loop


def kept_connections(
    path: str, args: argparse.Namespace, connections: int = 32
) -> tuple[float, str]:
    """Server CPU µs per request on ``connections`` kept connections (nginx keepalive)."""
    request, requests = nginx_request(flags=1), args.requests
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    process = _start_server(listener, args)
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
            data = received[client]
            data += client.recv(65536)
            if _answered(data):
                data.clear()
                answered += 1
                if sent < requests:
                    client.sendall(request)
                    sent += 1
    spent, loop = _stop_server(process)
    for client in received:
        client.close()
    listener.close()
    return spent / requests * 1e6, loop


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--interface", choices=("wsgi", "asgi"), default="wsgi")
    parser.add_argument("--keepalive", action="store_true")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8, help="the WSGI server's threads")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument(
        "--heap",
        type=int,
        default=0,
        help="objects the server keeps alive, as a large app does (a Django site: ~300000)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="serve with floor.py's stand-in, not fcgigw"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request under valgrind's callgrind instead of CPU time",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the server (all its threads) into FILE"
    )
    parser.add_argument("--src", help="serve with the fcgigw package in this directory")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.wrapper = []  # a command the server runs under (instructions_per_request)
    return args


Measure = Callable[[str, argparse.Namespace], tuple[float, str]]


def instructions_per_request(measure: Measure, args: argparse.Namespace) -> tuple[float, str]:
    """The server's user-space instructions per request, counted by valgrind's callgrind:
    (the count for 2N requests - the count for N) / N, so start-up and shutdown cancel out.
    Unlike CPU time it does not move with the machine's load (0.3% between runs), so it
    shows a change of a few percent that timing on a shared machine cannot."""
    counts, loop = [], ""
    # One WSGI thread: idle threads wake on the clock to see whether they may serve, and
    # under valgrind's slowness those wake-ups would add a few percent that vary run to run.
    args.threads = 1
    requests = args.requests
    with contextlib.nullcontext(os.environ["CGDIR"]) as tmp:
        log = os.path.join(tmp, "valgrind.log")
        args.wrapper = [
            "valgrind",
            "--tool=callgrind",
            "--cache-sim=no",
            f"--callgrind-out-file={os.path.join(tmp, 'callgrind.out')}",
            f"--log-file={log}",
        ]
        for n, count in enumerate((requests, 2 * requests)):
            args.requests = count
            _, loop = measure(os.path.join(tmp, f"s{n}"), args)
            os.rename(os.path.join(tmp, "callgrind.out"), os.path.join(tmp, f"callgrind.out.{n}"))
            with open(log) as file:
                found = re.search(r"I\s+refs:\s+([\d,]+)", file.read())
            if found is None:
                raise SystemExit(f"no instruction count in valgrind's log {log}")
            counts.append(int(found.group(1).replace(",", "")))
    args.requests = requests
    return (counts[1] - counts[0]) / requests, loop


def _backend(args: argparse.Namespace, loop: str) -> str:
    """What served, for the printed line."""
    if args.floor:
        return "floor (floor.py), " + ("asyncio on " + loop if loop else "one thread")
    if args.interface == "asgi":
        return f"asgi on {loop}"
    return f"wsgi, {args.threads} thread" + ("s" if args.threads > 1 else "")


def main() -> None:
    args = parse_args()
    logging.getLogger("fcgigw").setLevel(logging.ERROR)
    if args.serve_fd is not None:
        serve(args.serve_fd, args)
        return
    measure: Measure = kept_connections if args.keepalive else new_connections
    mode = "kept connections" if args.keepalive else "new connections"
    source = f", fcgigw from {args.src}" if args.src else ""
    source += f", {args.heap} objects on the heap" if args.heap else ""
    if args.instructions:
        count, loop = instructions_per_request(measure, args)
        print(
            f"{_backend(args, loop)}, {mode}: {count / 1000:.1f}k instructions per request"
            f" ({args.requests} and {2 * args.requests} requests{source})"
        )
        return
    results, loop = [], ""
    with contextlib.nullcontext(os.environ["CGDIR"]) as tmp:
        for n in range(args.repeat):
            microseconds, loop = measure(os.path.join(tmp, f"s{n}"), args)
            results.append(microseconds)
            time.sleep(0.1)
    print(
        f"{_backend(args, loop)}, {mode}: server CPU µs per request: median "
        f"{statistics.median(results):.1f}, best {min(results):.1f} "
        f"({args.repeat} x {args.requests}{source})"
    )


if __name__ == "__main__":
    main()
