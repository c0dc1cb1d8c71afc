"""What an on-demand pool (--workers-min 0) costs while idle, and what its first request
after idle waits, next to a static pool of the same app.

    python3 benchmarks/ondemand.py [--rounds 5] [--apps examples.hello:app,examples.flask_app:app]

For each app: a static pool (--workers 2) and an on-demand one (--workers-min 0
--workers-max 2 --worker-idle-timeout 1) on a Unix socket. It reports the summed VmRSS of
the process tree once the pool is idle (the on-demand one with no worker left), the
latency of a request sent to the idle on-demand pool (the supervisor sees the connection,
forks, the worker imports the app, accepts and answers), and of the next request (warm).
Latency is measured with fcgigw's own FastCGI client, no web server, so it is fcgigw's
part alone. Printed, never asserted; the numbers of one run are in ONDEMAND.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from harness import process_tree, rss_bytes, started, workdir

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from fcgigw.client import FastCGIClient, build_params  # noqa: E402

MIB = 1024 * 1024
IDLE_WAIT_SECONDS = 15.0


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    return env


def tree_rss(root: int) -> tuple[int, int]:
    """(processes, summed VmRSS) of the tree under ``root``."""
    pids = process_tree(root)
    return len(pids), sum(rss_bytes(pid) for pid in pids)


def wait_for_processes(root: int, count: int) -> None:
    deadline = time.monotonic() + IDLE_WAIT_SECONDS
    while len(process_tree(root)) != count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pool did not settle at {count} processes")
        time.sleep(0.05)


def wait_for_log(path: Path, text: str) -> None:
    deadline = time.monotonic() + IDLE_WAIT_SECONDS
    while text not in path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not in {path}")
        time.sleep(0.05)


def timed_request(address: str) -> float:
    """Seconds from connect to the whole response."""
    start = time.perf_counter()
    with FastCGIClient(f"unix:{address}", timeout=30) as client:
        response = client.request(build_params("GET", "/"))
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise RuntimeError(f"status {response.status}")
    return elapsed


def measure(app: str, pool: list[str], rounds: int, on_demand: bool) -> dict[str, float]:
    directory = workdir()
    socket_path = directory / "app.sock"
    command = [sys.executable, "-m", "fcgigw", "--bind", f"unix:{socket_path}", *pool, app]
    with started(command, socket_path, directory / "log", env=environment()) as process:
        # Static: supervisor + 2 workers; on demand: the start-up probe's connection started
        # a worker, which stops once idle.
        if on_demand:
            wait_for_log(directory / "log", "idle for")
        wait_for_processes(process.pid, 1 if on_demand else 3)
        time.sleep(0.5)
        processes, idle_rss = tree_rss(process.pid)
        result = {"processes": float(processes), "idle_rss_mib": idle_rss / MIB}
        if not on_demand:
            return result
        cold, warm = [], []
        for _ in range(rounds):
            wait_for_processes(process.pid, 1)
            cold.append(timed_request(str(socket_path)))
            warm.append(timed_request(str(socket_path)))
        _, busy_rss = tree_rss(process.pid)
        result["busy_rss_mib"] = busy_rss / MIB
        result["first_ms"] = statistics.median(cold) * 1000
        result["first_max_ms"] = max(cold) * 1000
        result["warm_ms"] = statistics.median(warm) * 1000
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--apps", default="examples.hello:app,examples.flask_app:app")
    args = parser.parse_args()
    static = ["--workers", "2"]
    on_demand = ["--workers-min", "0", "--workers-max", "2", "--worker-idle-timeout", "1"]
    print(
        "| app | pool | processes when idle | idle RSS | first request after idle | next request |"
    )
    print("|---|---|---|---|---|---|")
    for app in args.apps.split(","):
        fixed = measure(app, static, args.rounds, on_demand=False)
        lazy = measure(app, on_demand, args.rounds, on_demand=True)
        print(
            f"| `{app}` | `--workers 2` | {fixed['processes']:.0f} | "
            f"{fixed['idle_rss_mib']:.1f} MiB | | |"
        )
        print(
            f"| `{app}` | `--workers-min 0 --workers-max 2` | {lazy['processes']:.0f} | "
            f"{lazy['idle_rss_mib']:.1f} MiB | {lazy['first_ms']:.0f} ms "
            f"(max {lazy['first_max_ms']:.0f}) | {lazy['warm_ms']:.1f} ms |"
        )


if __name__ == "__main__":
    main()
