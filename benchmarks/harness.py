"""Processes for one measurement: the server under test, nginx in front, wrk as the load.

Every process starts in its own session, so a stop kills its whole tree (gunicorn's
worker, uWSGI's children) with one ``killpg``, and Ctrl-C in the terminal reaches only this
harness, whose ``finally`` blocks then stop the rest. Everything listens on a Unix socket in
a temporary directory or on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 3.0
RSS_SAMPLE_SECONDS = 0.05
#: Rescan /proc for the tree only this often; reading every /proc/*/stat each sample would
#: take CPU from the two cores that the load, nginx and the server already share.
TREE_RESCAN_SECONDS = 1.0
FASTCGI_PARAMS = "/etc/nginx/fastcgi_params"
#: wrk's --timeout is also its histogram's top: a 200 MiB upload to a slow reader takes
#: seconds, and a shorter timeout would count it as an error.
WRK_TIMEOUT = "60s"


def workdir() -> Path:
    """A temporary directory with a short path: Unix socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="fcgibench-", dir="/tmp"))


def wait_connectable(path: Path | str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until ``path`` (a Unix socket, or host:port) accepts a connection."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"exited with {process.returncode}: {' / '.join(tail)}")
        try:
            if isinstance(path, Path):
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(path))
            else:
                host, _, port = path.rpartition(":")
                socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {path} after {START_TIMEOUT_SECONDS} s")


def stop_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process's whole group, then SIGKILL it if it has not exited in time."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    # Children that outlived their parent (a worker mid-request) go with the group too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def started(
    argv: list[str],
    listen: Path | str,
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in a new session, output to ``log``, until the block ends; ready once
    ``listen`` accepts connections."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )
    try:
        wait_connectable(listen, process, log)
        yield process
    finally:
        stop_group(process, stop_signal)


def _children() -> dict[int, list[int]]:
    """Parent pid → child pids, for every process in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command name in parentheses may contain spaces; ppid follows the last ")".
            ppid = int(stat.rpartition(")")[2].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def rss_bytes(pid: int) -> int:
    """VmRSS of one process (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def worker_rss_bytes(root: int) -> int:
    """VmRSS of the tree's worker: its largest leaf process (gunicorn's and granian's worker
    under their arbiter, or ``root`` itself when it serves alone)."""
    tree, leaves, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        children = tree.get(pid, [])
        todo.extend(children)
        if not children:
            leaves.append(pid)
    return max(rss_bytes(pid) for pid in leaves)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far (0 for one that has gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5): fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuShares:
    """CPU µs per request of each party to a load: on 2 cores they share, so their sum, not
    the server's share alone, sets the rate (benchmarks/PROFILE.md)."""

    server_us: float
    nginx_us: float
    load_us: float  # wrk


class CpuMeter:
    """The CPU used by the server's tree, nginx's and wrk (this process's children) while
    the load runs: ``start()`` before wrk, ``shares(result, seconds)`` after it."""

    def __init__(self, server_pid: int, nginx_pid: int) -> None:
        self._roots = (server_pid, nginx_pid)
        self._before = (0.0, 0.0, 0.0)
        self._pids: tuple[list[int], list[int]] = ([], [])

    def _now(self) -> tuple[float, float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            cpu_seconds(self._pids[0]),
            cpu_seconds(self._pids[1]),
            children.ru_utime + children.ru_stime,
        )

    def start(self) -> None:
        # The trees as they are under the load's start (gunicorn's and granian's workers).
        self._pids = (process_tree(self._roots[0]), process_tree(self._roots[1]))
        self._before = self._now()

    def shares(self, result: WrkResult, seconds: float) -> CpuShares:
        requests = max(result.requests_per_second * seconds, 1.0)
        server, front, load = (
            (after - before) * 1e6 / requests
            for before, after in zip(self._before, self._now(), strict=True)
        )
        return CpuShares(server, front, load)


class PeakRss:
    """Samples the summed VmRSS of a process tree in a thread; ``peak`` is the maximum seen.

    Summing counts pages shared after a fork (gunicorn's arbiter and worker) once per
    process: the figure is what the tree would cost if nothing were shared, an upper bound.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        pids: list[int] = []
        rescan_at = 0.0
        while not self._done.is_set():
            if time.monotonic() >= rescan_at:
                pids, rescan_at = process_tree(self.root), time.monotonic() + TREE_RESCAN_SECONDS
            self.peak = max(self.peak, sum(rss_bytes(pid) for pid in pids))
            self._done.wait(RSS_SAMPLE_SECONDS)


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    fastcgi_temp_path {dir}/fastcgi;
    proxy_temp_path {dir}/proxy;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 256m;
    upstream backend {{
        server unix:{socket};
        {keepalive}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
{location}
        }}
    }}
}}
"""
#: nginx's upstream `keepalive`: the idle connections it keeps per worker. As the README
#: recommends, at least the requests it runs at once (wrk's 32): with `keepalive 8`, nginx
#: opened a new upstream connection for 12-28% of the requests and closed it after, for
#: every target, FastCGI or HTTP alike.
UPSTREAM_KEEPALIVE = 32
#: The location bodies: stock fastcgi_params, and the proxy settings nginx documents for
#: upstream keepalive (HTTP/1.1, no "Connection: close"). Request buffering is off, so the
#: body streams through and the upload scenarios time the server reading it, not nginx
#: writing a temporary file first (which made every server look alike at ~30 uploads/s).
_FASTCGI = f"include {FASTCGI_PARAMS};\nfastcgi_pass backend;\nfastcgi_request_buffering off;"
_PROXY = "proxy_pass http://backend;\nproxy_request_buffering off;"
LOCATIONS = {
    ("fastcgi", False): _FASTCGI,
    ("fastcgi", True): _FASTCGI + "\nfastcgi_keep_conn on;",
    ("http", False): _PROXY,
    ("http", True): _PROXY + '\nproxy_http_version 1.1;\nproxy_set_header Connection "";',
}


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )


@contextlib.contextmanager
def nginx(upstream: Path, protocol: str, keepalive: bool, directory: Path) -> Iterator[str]:
    """nginx, one worker, on 127.0.0.1 in front of ``upstream``; yields its host:port."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (benchmarks/setup.sh)")
    port = free_port()
    conf = directory / "nginx.conf"
    location = LOCATIONS[protocol, keepalive].replace("\n", "\n" + " " * 12)
    conf.write_text(
        NGINX_CONF.format(
            dir=directory,
            port=port,
            socket=upstream,
            user="user root;" if os.geteuid() == 0 else "",
            keepalive=f"keepalive {UPSTREAM_KEEPALIVE};" if keepalive else "",
            location=" " * 12 + location,
        )
    )
    argv = [binary, "-c", str(conf), "-p", str(directory), "-e", str(directory / "nginx.log")]
    # SIGTERM is nginx's fast shutdown: SIGQUIT would wait for the uploads still in flight.
    with started(argv, f"127.0.0.1:{port}", directory / "nginx.log"):
        yield f"127.0.0.1:{port}"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles in milliseconds, failed requests."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def milliseconds(text: str) -> float:
    """wrk's latency text (``812.00us``, ``1.20ms``, ``2.00s``) in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not found:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(found.group(1)) * UNITS_MS[found.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """The numbers of wrk's ``--latency`` report; socket errors, non-2xx responses and the
    upload script's wrong bodies count as errors."""

    def number(pattern: str) -> str:
        found = re.search(pattern, output, re.MULTILINE)
        if not found:
            raise ValueError(f"wrk output lacks {pattern!r}:\n{output}")
        return found.group(1)

    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    bad_status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    wrong_bodies = re.search(r"Wrong bodies: (\d+)", output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    errors += int(wrong_bodies.group(1)) if wrong_bodies else 0
    return WrkResult(
        requests_per_second=float(number(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=milliseconds(number(r"^\s+50%\s+(\S+)")),
        p99_ms=milliseconds(number(r"^\s+99%\s+(\S+)")),
        errors=errors + (int(bad_status.group(1)) if bad_status else 0),
    )


def wrk(url: str, seconds: int, connections: int, threads: int, script: Path | None) -> WrkResult:
    """``wrk`` against ``url``: by default two threads, one per core of the 2-core machine."""
    threads = min(threads, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["--timeout", WRK_TIMEOUT, *(["-s", str(script)] if script else []), url]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()[:100]}")
    return parse_wrk(done.stdout)


def check(url: str, body: bytes | None, expect: bytes) -> None:
    """One request before the load: a server that answers fast but wrongly must not count."""
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        got = response.read()
    if got != expect:
        raise RuntimeError(f"wrong response: {len(got)} bytes {got[:20]!r}, not {expect[:20]!r}")


POST_SCRIPT = """
-- POST a body of {size} bytes. wrk calls init() in each thread, then formats that thread's
-- fixed request once (there is no request() function), so the body is built once per
-- thread, and not in the main state, where only setup() and done() run.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
function init(args) wrk.body = string.rep("x", {size}) end

-- The app answers the length it read: any other answer is a wrong body, and counts as an
-- error (a server that answers before the whole body is read must not look fast).
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
wrong = 0
function response(status, headers, body)
    if body ~= "{size}" then wrong = wrong + 1 end
end
function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do total = total + thread:get("wrong") end
    io.write(string.format("Wrong bodies: %d\\n", total))
end
"""


def post_script(directory: Path, body_bytes: int) -> Path:
    """A wrk Lua script that POSTs ``body_bytes`` and counts wrong answers."""
    script = directory / f"post-{body_bytes}.lua"
    script.write_text(POST_SCRIPT.format(size=body_bytes))
    return script
