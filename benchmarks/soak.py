"""Soak test: many requests through real nginx to one fcgigw, watching its memory and fds.

    python3 benchmarks/soak.py [--requests 1000000] [--interface wsgi|asgi] [--connections 16]
                               [--no-keep-conn] [--sample-seconds 1]

An asyncio load generator (in this process) sends a fixed mix through nginx (stock
fastcgi_params, ``fastcgi_keep_conn`` + upstream keepalive unless --no-keep-conn, request
bodies streamed with ``fastcgi_request_buffering off`` so aborted uploads reach fcgigw):

    55% GET /hello on a kept-alive client connection     10% GET /hello with Connection: close
    20% GET /64k (64 KiB response)                        5% POST /upload of 1 MiB
     5% upload abandoned after 256 KiB (client closes)    5% 10 MiB response abandoned after
                                                             its first 64 KiB (client closes)

fcgigw's RSS (VmRSS) and open fds are sampled every --sample-seconds. The report gives them
after the warm-up (the first 5% of the requests), at the end of the load, and once idle,
with a verdict: RSS is flat when it grew less than max(8 MiB, 10%) from warm-up to the end
and, over the second half of the run, less than 0.5 MiB per 100k requests; fds are flat when
the idle count is back within 5 of the warm-up one. It also prints nginx's [error] lines and
fcgigw's WARNING/ERROR lines. --tracemalloc runs fcgigw under tracemalloc and prints the
allocation sites that grew between the warm-up and the end. Numbers are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
KIB64 = b"k" * 65536
HELLO = b"Hello, world!"
#: (share in percent, kind) of the request mix.
MIX = (
    (55, "hello"),
    (10, "hello-close"),
    (20, "64k"),
    (5, "upload"),
    (5, "abort-upload"),
    (5, "abort-response"),
)
NGINX_EXTRA = """
fastcgi_request_buffering off;
fastcgi_max_temp_file_size 0;
"""


# -- the apps fcgigw serves (benchmarks.soak:wsgi_app / asgi_app) -----------------------------


_snapshot: list[Any] = []


def tracemalloc_report(path: str) -> bytes:
    """/_soak/snapshot keeps a snapshot; /_soak/compare lists what grew since (top 12)."""
    import tracemalloc  # noqa: PLC0415

    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    if path.endswith("snapshot"):
        _snapshot[:] = [snapshot]
        return b"[]"
    stats = snapshot.compare_to(_snapshot[0], "lineno")[:12]
    return json.dumps([str(stat) for stat in stats]).encode()


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/_soak/"):
        body = tracemalloc_report(path)
    elif path == "/upload":
        size = 0
        while chunk := environ["wsgi.input"].read(65536):
            size += len(chunk)
        body = str(size).encode()
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (KIB64 for _ in range(160))  # 10 MiB, as the client reads it
    else:
        body = KIB64 if path == "/64k" else HELLO
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    path = scope["path"]
    if path.startswith("/_soak/"):
        await respond(send, tracemalloc_report(path))
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(160):
            await send({"type": "http.response.body", "body": KIB64, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    await respond(
        send, str(size).encode() if path == "/upload" else KIB64 if path == "/64k" else HELLO
    )


async def respond(send: Any, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- sampling fcgigw -----------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    requests: int
    rss_bytes: int
    fds: int


def sample(pid: int, started: float, requests: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(status.split("VmRSS:")[1].split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(time.monotonic() - started, requests, rss_kib * 1024, fds)


# -- the load --------------------------------------------------------------------------------


@dataclass
class Load:
    host: str
    port: int
    total: int
    next_index: int = 0
    done: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def kind(self, index: int) -> str:
        slot = index % 100
        for share, kind in MIX:
            if slot < share:
                return kind
            slot -= share
        raise AssertionError("the mix adds up to 100")


class ClientConnection:
    """One HTTP/1.1 connection to nginx; reopened when a request closes it."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.load.host, self.load.port)
        return self.reader, self.writer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def run(self, kind: str) -> str:
        reader, writer = await self.open()
        path = {"64k": "/64k", "abort-response": "/stream"}.get(kind, "/hello")
        body = b""
        if kind in ("upload", "abort-upload"):
            path, body = "/upload", b"u" * MIB
        close = kind in ("hello-close", "abort-upload", "abort-response")
        head = f"{'POST' if body else 'GET'} {path} HTTP/1.1\r\nHost: soak\r\n"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        writer.write(head.encode() + b"\r\n")
        if kind == "abort-upload":
            writer.write(body[: 256 * 1024])
            await writer.drain()
            await self.close()
            return "abandoned"
        writer.write(body)
        status, length, chunked = await read_head(reader)
        if kind == "abort-response":
            await reader.readexactly(65536)
            await self.close()
            return "abandoned" if status == 200 else f"HTTP {status}"
        payload = await read_body(reader, length, chunked)
        if close:
            await self.close()
        expected = {"hello": HELLO, "hello-close": HELLO, "64k": KIB64, "upload": b"%d" % MIB}
        if status != 200 or payload != expected[kind]:
            return f"HTTP {status}" if status != 200 else "wrong body"
        return "ok"


async def read_head(reader: asyncio.StreamReader) -> tuple[int, int | None, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = (line.partition(":") for line in lines[1:])
    headers = {name.lower(): value.strip() for name, _, value in fields}
    length = headers.get("content-length")
    chunked = "chunked" in headers.get("transfer-encoding", "")
    return status, int(length) if length else None, chunked


async def read_body(reader: asyncio.StreamReader, length: int | None, chunked: bool) -> bytes:
    if not chunked:
        return await reader.readexactly(length or 0)
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")
    return b"".join(parts)


async def client_task(load: Load) -> None:
    connection = ClientConnection(load)
    while load.next_index < load.total:
        index = load.next_index
        load.next_index += 1
        kind = load.kind(index)
        try:
            outcome = await asyncio.wait_for(connection.run(kind), 60)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as error:
            outcome = type(error).__name__
            await connection.close()
        load.outcomes[f"{kind}: {outcome}"] += 1
        load.done += 1
    await connection.close()


async def generate(load: Load, connections: int) -> None:
    await asyncio.gather(*(client_task(load) for _ in range(connections)))


# -- the run -----------------------------------------------------------------------------------


def mib_per_100k(first: Sample, last: Sample) -> float:
    requests = max(1, last.requests - first.requests)
    return (last.rss_bytes - first.rss_bytes) / MIB * 100_000 / requests


def verdict(samples: list[Sample], warm: Sample, idle: Sample) -> tuple[str, str]:
    end = samples[-1]
    middle = next(s for s in samples if s.requests >= (warm.requests + end.requests) // 2)
    slope = mib_per_100k(middle, end)
    rss_flat = end.rss_bytes - warm.rss_bytes < max(8 * MIB, warm.rss_bytes // 10)
    rss_verdict = "flat" if rss_flat and slope < 0.5 else "NOT flat"
    fd_verdict = "flat" if idle.fds <= warm.fds + 5 else "NOT flat"
    return f"{rss_verdict} ({slope:+.2f} MiB per 100k requests in the second half)", fd_verdict


def report(load: Load, samples: list[Sample], idle: Sample, elapsed: float) -> None:
    warm = next(s for s in samples if s.requests >= load.total // 20)
    end = samples[-1]
    rss_verdict, fd_verdict = verdict(samples, warm, idle)
    failed = {k: v for k, v in load.outcomes.items() if not k.endswith(("ok", "abandoned"))}
    print(f"\n{load.done} requests in {elapsed:.0f} s ({load.done / elapsed:.0f} req/s)")
    for key, count in sorted(load.outcomes.items()):
        print(f"  {key:<32} {count}")
    print(f"failed: {sum(failed.values())}")
    print(f"{'':<24}{'requests':>10}{'RSS MiB':>10}{'fds':>6}")
    for name, s in (("start (after warm-up)", warm), ("end of load", end), ("idle after", idle)):
        print(f"{name:<24}{s.requests:>10}{s.rss_bytes / MIB:>10.1f}{s.fds:>6}")
    peak = max(samples, key=lambda s: s.rss_bytes)
    print(f"{'peak RSS':<24}{peak.requests:>10}{peak.rss_bytes / MIB:>10.1f}{peak.fds:>6}")
    print(f"RSS: {rss_verdict}; fds: {fd_verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--interface", choices=["wsgi", "asgi"], default="wsgi")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-keep-conn", action="store_true", help="no fastcgi_keep_conn")
    parser.add_argument("--sample-seconds", type=float, default=1.0)
    parser.add_argument("--tracemalloc", action="store_true", help="report what allocated")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from servers import child_environment, run_fcgigw, run_nginx  # noqa: PLC0415

    app = f"benchmarks.soak:{args.interface}_app"
    env = child_environment() | ({"PYTHONTRACEMALLOC": "1"} if args.tracemalloc else {})
    with (
        run_fcgigw("--threads", "8", app, env=env) as fcgigw,
        run_nginx(fcgigw.address, keepalive=not args.no_keep_conn, extra=NGINX_EXTRA) as nginx,
    ):
        pid = fcgigw.process.pid
        host, _, port = nginx.address.rpartition(":")
        load = Load(host, int(port), args.requests)
        samples: list[Sample] = []
        started = time.monotonic()
        stop = threading.Event()

        def sampler() -> None:
            while not stop.wait(args.sample_seconds):
                samples.append(sample(pid, started, load.done))
                last = samples[-1]
                if len(samples) % 30 == 0:
                    print(
                        f"[{last.seconds:5.0f} s] {last.requests} requests, "
                        f"RSS {last.rss_bytes / MIB:.1f} MiB, {last.fds} fds",
                        flush=True,
                    )

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        print(
            f"soak: {args.requests} requests, {args.interface}, {args.connections} "
            f"connections, nginx keep-conn {'off' if args.no_keep_conn else 'on'}",
            flush=True,
        )
        if args.tracemalloc:
            warm_up = Load(host, int(port), args.requests // 20)
            asyncio.run(generate(warm_up, args.connections))
            http_get(nginx.address, "/_soak/snapshot")
        asyncio.run(generate(load, args.connections))
        elapsed = time.monotonic() - started
        stop.set()
        thread.join()
        samples.append(sample(pid, started, load.done))
        time.sleep(2)  # nginx closes its idle upstream connections only on its own schedule
        idle = sample(pid, started, load.done)
        report(load, samples, idle, elapsed)
        print_problems("nginx [error] lines", nginx.log(), ("[error]",))
        print_problems("fcgigw WARNING/ERROR lines", fcgigw.log(), (" WARNING ", " ERROR "))
        if args.tracemalloc:
            print("allocations that grew since the warm-up (file:line: size, count):")
            for line in json.loads(http_get(nginx.address, "/_soak/compare")):
                print(f"  {line}")


def http_get(address: str, path: str) -> bytes:
    import http.client  # noqa: PLC0415

    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()


def print_problems(title: str, log: str, markers: tuple[str, ...]) -> None:
    """The matching lines (at most 8), each with the traceback that follows it."""
    lines = log.splitlines()
    found = [n for n, line in enumerate(lines) if any(marker in line for marker in markers)]
    print(f"{title}: {len(found)}")
    for n in found[:8]:
        print(f"  {lines[n][:300]}")
        for line in lines[n + 1 : n + 40]:
            if not line.startswith((" ", "Traceback", "During", "The above")) and ":" in line[:30]:
                break
            print(f"    {line[:300]}")


if __name__ == "__main__":
    main()
