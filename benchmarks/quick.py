"""A quick throughput check of fcgigw alone: run.py's hello scenario, one round.

    python3 benchmarks/quick.py [--threads N] [--seconds S] [--connections C] [--apps wsgi,asgi]

The fcgigw targets only, so it needs neither benchmarks/setup.sh's peers nor its venv (it
uses this python when there is none): for a before/after check while optimising. The full
comparison is ``python3 benchmarks/run.py``.
"""

from __future__ import annotations

import argparse

import run


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", default="8", help="fcgigw --threads for the WSGI app")
    parser.add_argument("--seconds", default="8")
    parser.add_argument("--connections", default="32")
    parser.add_argument("--apps", default="wsgi,asgi", help="comma-separated: wsgi, asgi")
    args = parser.parse_args()
    targets = ",".join(f"fcgigw-{app}" for app in args.apps.split(","))
    run.main([
        "--targets", targets, "--scenarios", "hello", "--rounds", "1",
        "--seconds", args.seconds, "--connections", args.connections,
        f"--fcgigw-arg=--threads={args.threads}",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
