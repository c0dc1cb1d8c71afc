"""Micro-benchmark of a request body's way through fcgigw, per backend: server CPU per MiB
uploaded, no nginx.

    python3 benchmarks/upload_micro.py [--interface wsgi|asgi] [--mib N] [--record-bytes B]
                                       [--repeat N] [--instructions] [--src DIR]

One POST of ``--mib`` MiB, sent as STDIN records of ``--record-bytes`` (8192 by default:
what nginx sends with ``fastcgi_request_buffering off``, as benchmarks/run.py configures it)
to ``python -m fcgigw --threads 1`` serving the upload app of benchmarks/apps, which reads
the body 64 KiB at a time. Reported: the server process's CPU milliseconds per MiB (from
/proc), median of ``--repeat`` uploads; or with ``--instructions``, callgrind's count of its
user-space instructions per MiB ((count for 3N MiB - count for N MiB) / 2N: start-up
cancels out). Copies show plainly there; timing on a shared machine moves by 20%.
``--src DIR`` serves with the fcgigw package in DIR (another checkout's ``src``, or the
site-packages of a compiled build) instead of the one this Python imports.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from fcgigw.protocol import (  # noqa: E402
    NEED_DATA,
    ClientConnection,
    EndRequest,
    InputData,
    InputEnd,
    RequestStarted,
    Role,
)

MIB = 1024 * 1024
#: How long a server may take to listen (under valgrind, tens of times slower).
START_SECONDS = 120.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _connect(path: str, server: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + START_SECONDS
    while True:
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start") from None
            time.sleep(0.05)


def _upload(sock: socket.socket, total: int, record_bytes: int) -> None:
    """POST ``total`` bytes in records of ``record_bytes`` and wait for END_REQUEST."""
    client = ClientConnection()
    params = [
        (b"REQUEST_METHOD", b"POST"),
        (b"SCRIPT_NAME", b"/upload"),
        (b"CONTENT_LENGTH", str(total).encode()),
        (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
    ]
    sock.sendall(client.send(RequestStarted(1, Role.RESPONDER, False, params)))
    record = client.send(InputData(1, b"u" * record_bytes))
    whole, rest = divmod(total, record_bytes)
    batch = record * 64
    for _ in range(whole // 64):
        sock.sendall(batch)
    sock.sendall(record * (whole % 64))
    if rest:
        sock.sendall(client.send(InputData(1, b"u" * rest)))
    sock.sendall(client.send(InputEnd(1)))
    while data := sock.recv(65536):
        client.receive_data(data)
        while (event := client.next_event()) is not NEED_DATA:
            if isinstance(event, EndRequest):
                return
    raise SystemExit("the server closed the connection before END_REQUEST")


def run_once(args: argparse.Namespace, mib: int, wrapper: list[str]) -> float:
    """Serve one upload of ``mib`` MiB; the server's CPU seconds for it (0 when wrapped)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fcgigw.sock")
        app = "wsgi_apps:upload" if args.interface == "wsgi" else "asgi_apps:upload"
        paths = [args.src] if args.src else []
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([*paths, str(HERE / "apps")]))
        command = [sys.executable, "-m", "fcgigw", "--bind", f"unix:{path}", "--threads", "1"]
        server = subprocess.Popen(
            [*wrapper, *command, app],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with _connect(path, server) as sock:
                before = 0.0 if wrapper else _cpu_seconds(server.pid)
                _upload(sock, mib * MIB, args.record_bytes)
                spent = 0.0 if wrapper else _cpu_seconds(server.pid) - before
        finally:
            server.terminate()
            server.wait(60)
        return spent


def instructions_per_mib(args: argparse.Namespace) -> float:
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "valgrind.log")
        wrapper = ["valgrind", "--tool=callgrind", "--cache-sim=no", f"--log-file={log}"]
        wrapper.append(f"--callgrind-out-file={os.path.join(tmp, 'callgrind.out')}")
        for mib in (args.mib, 3 * args.mib):
            run_once(args, mib, wrapper)
            found = re.search(r"I\s+refs:\s+([\d,]+)", Path(log).read_text())
            if found is None:
                raise SystemExit(f"no instruction count in valgrind's log {log}")
            counts.append(int(found.group(1).replace(",", "")))
    return (counts[1] - counts[0]) / (2 * args.mib)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interface", choices=("wsgi", "asgi"), default="wsgi")
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--record-bytes", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--src", help="serve with the fcgigw package in this directory")
    args = parser.parse_args()
    what = f"{args.interface}, {args.mib} MiB in records of {args.record_bytes} bytes"
    if args.instructions:
        args.mib = min(args.mib, 20)  # ~1 s of valgrind per MiB
        count = instructions_per_mib(args)
        print(f"{args.interface}: {count / 1e6:.2f}M instructions per MiB uploaded")
        return
    results = [run_once(args, args.mib, []) * 1000 / args.mib for _ in range(args.repeat)]
    print(
        f"{what}: server CPU ms per MiB: median {statistics.median(results):.2f}, "
        f"best {min(results):.2f} ({args.repeat} uploads)"
    )


if __name__ == "__main__":
    main()
