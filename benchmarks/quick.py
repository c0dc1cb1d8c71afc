"""A quick throughput check: wrk → nginx (stock fastcgi_params) → fcgigw → the hello apps.

    python3 benchmarks/quick.py [--threads N] [--seconds S] [--connections C] [--apps wsgi,asgi]

For each app (WSGI examples/hello.py, ASGI examples/hello_asgi.py: same body and headers),
runs once without and once with nginx keep-alive (fastcgi_keep_conn + upstream keepalive)
and prints req/s and latency in one table. Numbers are printed, never asserted. The full
harness with peers and scenarios belongs to the performance work; this is the smoke version.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import run_fcgigw, run_nginx

APPS = {"wsgi": "examples.hello:app", "asgi": "examples.hello_asgi:app"}
COLUMNS = ("req/s", "p50", "p99", "errors")


def wrk(url: str, seconds: int, connections: int) -> dict[str, str]:
    subprocess.run(["wrk", "-t2", f"-c{connections}", "-d1s", url], capture_output=True, check=True)
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {
        "req/s": re.search(r"Requests/sec:\s+([\d.]+)", output),
        "p50": re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE),
        "p99": re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE),
        "errors": re.search(r"Non-2xx or 3xx responses: (\d+)", output),
    }
    return {k: (m.group(1) if m else "0") for k, m in found.items()}


def row(*cells: str) -> str:
    app, mode, *numbers = cells
    return f"{app:<5} {mode:<13}" + "".join(f" {cell:>9}" for cell in numbers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="8")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--apps", default="wsgi,asgi", help="comma-separated: wsgi, asgi")
    args = parser.parse_args()
    apps = args.apps.split(",")
    if unknown := set(apps) - APPS.keys():
        parser.error(f"unknown app(s) {', '.join(sorted(unknown))}; choose from wsgi, asgi")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print(row("app", "nginx mode", *COLUMNS), flush=True)
    for app in apps:
        with run_fcgigw("--threads", args.threads, APPS[app]) as server:
            for keepalive in (False, True):
                with run_nginx(server.address, keepalive=keepalive) as nginx:
                    result = wrk(f"http://{nginx.address}/", args.seconds, args.connections)
                mode = "keep-conn" if keepalive else "no keepalive"
                print(row(app, mode, *(result[column] for column in COLUMNS)), flush=True)


if __name__ == "__main__":
    main()
