"""Micro-benchmark of the sans-I/O protocol core's hot path: µs per request, no sockets.

    python3 benchmarks/protocol_micro.py [--repeat N] [--number N] [--against DIR [--rounds N]]

Cases, each timed ``--repeat`` times over ``--number`` requests (median and best reported):

- ``parse``: a new ServerConnection, then nginx's usual request (BEGIN_REQUEST, one PARAMS
  record of 19 pairs / ~400 bytes, the empty PARAMS and the empty STDIN of a GET: 4 records,
  one read) fed whole and drained to NEED_DATA (RequestStarted, InputEnd).
- ``response``: what the server sends at the end of a small response, OutputData (a ~100-byte
  head and body) and EndRequest to bytes, as ``server.connection.end_request`` does, the two
  events built as the server builds them; ``response send`` the same events built once.
- ``new connection``: ServerConnection() alone, which ``parse`` includes.
- ``keepalive cycle``: parse and response on one FCGI_KEEP_CONN connection, request after
  request: the steady state of a busy nginx upstream.

``--against DIR`` times the same cases for the ``fcgigw`` package in DIR (e.g. an older
checkout's ``src``) and for this one, each in its own interpreter, alternating ``--rounds``
times: a before/after on the same machine under the same load.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import struct
import subprocess
import sys
import timeit
from collections.abc import Callable, Iterator

import fcgigw
from fcgigw.protocol import NEED_DATA, EndRequest, OutputData, ServerConnection

_HEADER = struct.Struct(">BBHHBx")

#: What nginx's stock fastcgi_params sends for ``GET /index.php?id=7`` from curl, plus the
#: request's headers: 19 pairs, ~400 bytes of pair stream.
NGINX_PARAMS = (
    (b"QUERY_STRING", b"id=7"),
    (b"REQUEST_METHOD", b"GET"),
    (b"CONTENT_TYPE", b""),
    (b"CONTENT_LENGTH", b""),
    (b"SCRIPT_NAME", b"/index.php"),
    (b"REQUEST_URI", b"/index.php?id=7"),
    (b"DOCUMENT_URI", b"/index.php"),
    (b"DOCUMENT_ROOT", b"/var/www/html"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REQUEST_SCHEME", b"http"),
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"51234"),
    (b"SERVER_ADDR", b"127.0.0.1"),
    (b"SERVER_PORT", b"80"),
    (b"SERVER_NAME", b"localhost"),
    (b"HTTP_HOST", b"localhost"),
    (b"HTTP_USER_AGENT", b"curl/7.88.1"),
)
RESPONSE = b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"


def _record(record_type: int, request_id: int, content: bytes = b"") -> bytes:
    # Built here rather than with fcgigw's own build_record, so both sides of a comparison
    # parse the very same bytes.
    padding = -len(content) & 7
    header = _HEADER.pack(1, record_type, request_id, len(content), padding)
    return header + content + bytes(padding)


def _pairs(pairs: tuple[tuple[bytes, bytes], ...]) -> bytes:
    # Every name and value here is under 128 bytes: the one-byte lengths of §3.4.
    return b"".join(bytes((len(n), len(v))) + n + v for n, v in pairs)


def nginx_request(flags: int) -> bytes:
    """BEGIN_REQUEST (responder), PARAMS, empty PARAMS, empty STDIN: one nginx write."""
    begin = struct.pack(">HB5x", 1, flags)
    return b"".join(
        (_record(1, 1, begin), _record(4, 1, _pairs(NGINX_PARAMS)), _record(4, 1), _record(5, 1))
    )


def _cases(number: int) -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """name -> (setup, one request) for the fcgigw first on sys.path (PYTHONPATH).

    A setup runs once per repeat, untimed, and prepares what ``number`` requests need.
    """
    request = nginx_request(flags=0)
    keepalive_request = nginx_request(flags=1)
    ready: list[Iterator[ServerConnection]] = []

    def parse() -> None:
        connection = ServerConnection()
        connection.receive_data(request)
        while connection.next_event() is not NEED_DATA:
            pass

    def started_connections() -> None:
        # One parsed request per timed response, so the response is all that is timed.
        connections = [ServerConnection() for _ in range(number)]
        for connection in connections:
            connection.receive_data(request)
            while connection.next_event() is not NEED_DATA:
                pass
        ready[:] = [iter(connections)]

    def respond() -> None:
        connection = next(ready[0])
        connection.send(OutputData(1, RESPONSE)) + connection.send(EndRequest(1))

    output, end = OutputData(1, RESPONSE), EndRequest(1)

    def send_only() -> None:
        connection = next(ready[0])
        connection.send(output) + connection.send(end)

    def keepalive_connection() -> None:
        ready[:] = [itertools.repeat(ServerConnection())]

    def cycle() -> None:
        connection = next(ready[0])
        connection.receive_data(keepalive_request)
        while connection.next_event() is not NEED_DATA:
            pass
        connection.send(OutputData(1, RESPONSE)) + connection.send(EndRequest(1))

    return {
        "new connection": (lambda: None, ServerConnection),
        "parse": (lambda: None, parse),
        "response": (started_connections, respond),
        "response send": (started_connections, send_only),
        "keepalive cycle": (keepalive_connection, cycle),
    }


Results = dict[str, tuple[float, float]]


def measure(repeat: int, number: int) -> Results:
    """µs per request of each case: (median, best) of the repeats."""
    results: Results = {}
    for name, (setup, run) in _cases(number).items():
        timer = timeit.Timer(run, setup)
        timer.timeit(number)  # warm up: caches, the interpreter's specialisation
        runs = [total / number * 1e6 for total in timer.repeat(repeat=repeat, number=number)]
        results[name] = (statistics.median(runs), min(runs))
    return results


def _measure_in(directory: str, repeat: int, number: int) -> Results:
    """measure() in a fresh interpreter that imports ``fcgigw`` from ``directory`` first."""
    path = os.pathsep.join((directory, os.environ.get("PYTHONPATH", "")))
    output = subprocess.run(
        [sys.executable, __file__, "--json", f"--repeat={repeat}", f"--number={number}"],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=path),
    ).stdout
    return {name: (median, best) for name, (median, best) in json.loads(output).items()}


def compare(against: str, rounds: int, repeat: int, number: int) -> None:
    """Alternate the two versions round by round, so a load change on a shared machine hits
    both alike; print the median of the rounds' medians, and the best run of all."""
    current = os.path.dirname(os.path.dirname(fcgigw.__file__))
    runs: dict[str, list[Results]] = {against: [], current: []}
    for _ in range(rounds):
        for directory, results in runs.items():
            results.append(_measure_in(directory, repeat, number))
    print(f"{'':16}  {'median':^28}  {'best':^28}")
    print(f"{'case':16}" + f"  {'against':>8} {'current':>8} {'speed-up':>9}" * 2)
    for name in runs[current][0]:
        line = f"{name:16}"
        for statistic, pick in ((0, statistics.median), (1, min)):
            before = pick(r[name][statistic] for r in runs[against])
            after = pick(r[name][statistic] for r in runs[current])
            line += f"  {before:8.2f} {after:8.2f} {before / after:8.2f}x"
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats (median taken)")
    parser.add_argument("--number", type=int, default=10_000, help="requests per repeat")
    parser.add_argument("--against", metavar="DIR", help="also time the fcgigw found in DIR")
    parser.add_argument("--rounds", type=int, default=5, help="alternations with --against")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(measure(args.repeat, args.number)))
        return
    print(f"python {sys.version.split()[0]}, fcgigw from {os.path.dirname(fcgigw.__file__)}")
    print(f"{args.repeat} timeit repeats of {args.number} requests, µs per request")
    if args.against:
        compare(args.against, args.rounds, args.repeat, args.number)
        return
    print(f"{'case':<16} {'median':>9} {'best':>9}")
    for name, (median, best) in measure(args.repeat, args.number).items():
        print(f"{name:<16} {median:9.2f} {best:9.2f}")


if __name__ == "__main__":
    main()
