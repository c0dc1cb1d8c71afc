"""Benchmark fcgigw against its peers: wrk → nginx (1 worker) → one server process.

    bash benchmarks/setup.sh          # once: apt packages and benchmarks/.venv
    python3 benchmarks/run.py [--targets a,b] [--scenarios x,y] [--seconds S] [--rounds N]
                              [--modes new,keepalive] [--write-results]

Each cell (a target, a scenario, an nginx mode) starts a fresh server with the scenario's
app, a fresh nginx in front (stock fastcgi_params once without and once with upstream
keepalive; proxy_pass with keepalive for HTTP servers), checks one response, notes the
worker's RSS, runs wrk, and samples the server tree's RSS and the CPU time that the server,
nginx and wrk each use per request. Rounds run every target in
turn, alternating the order, so drift of the machine hits all alike; the tables show
medians. Numbers are printed, never asserted; the targets of issues 14 and 6 are judged in
the last tables. --write-results also writes benchmarks/RESULTS.md and results.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import chart
from harness import (
    CpuMeter,
    PeakRss,
    check,
    nginx,
    nginx_binary,
    post_script,
    started,
    workdir,
    worker_rss_bytes,
    wrk,
)
from report import results_markdown, tables, targets_markdown
from summary import Measurement, MiB, Results
from targets import (
    APPS,
    CHECK_BODY_BYTES,
    HERE,
    SCENARIOS,
    TARGETS,
    Launch,
    Scenario,
    Target,
    app_environment,
    python,
    unavailable,
)

WARMUP_SECONDS = 1
KEEPALIVE_MODES = {"new": False, "keepalive": True}


def measure(
    target: Target, scenario: Scenario, keepalive: bool, args: argparse.Namespace, rundir: Path
) -> Measurement:
    """One cell: start the server and nginx, load them with wrk, stop both."""
    directory = workdir()
    try:
        sock = directory / "app.sock"
        launch = Launch(python(), target.app(scenario), sock, rundir, tuple(args.fcgigw_arg))
        log = directory / "server.log"
        connections = args.connections or scenario.connections
        script = post_script(directory, scenario.body_bytes) if scenario.body_bytes else None
        argv = target.command(launch)
        with (
            started(
                argv, sock, log, cwd=APPS, env=app_environment(), stop_signal=target.stop_signal
            ) as server,
            PeakRss(server.pid) as rss,
            nginx(sock, target.upstream, keepalive, directory) as address,
        ):
            url = f"http://{address}/"
            check(url, b"x" * CHECK_BODY_BYTES if scenario.body_bytes else None, scenario.expect)
            idle = worker_rss_bytes(server.pid)
            if scenario.warmup:
                wrk(url, WARMUP_SECONDS, connections, scenario.wrk_threads, script)
            seconds = max(args.seconds, scenario.min_seconds)
            meter = CpuMeter(server.pid, int((directory / "nginx.pid").read_text()))
            meter.start()
            result = wrk(url, seconds, connections, scenario.wrk_threads, script)
            cpu = meter.shares(result, seconds)
        return Measurement(result, rss.peak, idle, cpu)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_rounds(args: argparse.Namespace, targets: list[Target], rundir: Path) -> Results:
    """Every round runs each scenario and mode across all targets, in alternating order."""
    results: Results = {}
    skipped = {t.name: reason for t in targets if (reason := unavailable(t))}
    for number in range(args.rounds):
        order = targets if number % 2 == 0 else targets[::-1]
        for scenario in (SCENARIOS[name] for name in args.scenarios):
            for keepalive in (KEEPALIVE_MODES[mode] for mode in args.modes):
                for target in order:
                    runs = results.setdefault((scenario.name, target.name, keepalive), [])
                    run = cell(
                        target, scenario, keepalive, args=args, rundir=rundir, skipped=skipped
                    )
                    runs.append(run)
                    if run != "-":
                        progress(number, scenario, keepalive, target, run)
    return results


def cell(
    target: Target,
    scenario: Scenario,
    keepalive: bool,
    *,
    args: argparse.Namespace,
    rundir: Path,
    skipped: dict[str, str],
) -> Measurement | str:
    """A measurement, or "-" / "not run: why" for a cell that cannot run."""
    if scenario.name not in target.scenarios or keepalive not in target.modes:
        return "-"
    if target.name in skipped:
        return f"not run: {skipped[target.name]}"
    try:
        return measure(target, scenario, keepalive, args, rundir)
    except (OSError, RuntimeError, ValueError, subprocess.CalledProcessError) as error:
        return f"not run: {error}".replace("|", "/").replace("\n", " ")[:160]


def progress(
    number: int, scenario: Scenario, keepalive: bool, target: Target, run: Measurement | str
) -> None:
    """One line per cell on stderr, so a long run shows it is alive."""
    mode = "keepalive" if keepalive else "new conn"
    if isinstance(run, Measurement):
        w = run.wrk
        text = f"{w.requests_per_second:9.1f} req/s p99 {w.p99_ms:7.2f} ms errors {w.errors} "
        idle = run.idle_worker_rss_bytes / MiB
        text += f"rss {run.peak_rss_bytes / MiB:.0f} MiB (idle worker {idle:.0f})"
    else:
        text = run
    line = f"[round {number + 1}] {scenario.name:<16} {mode:<9} {target.name:<12} {text}"
    print(line, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog="targets:\n" + targets_markdown(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated names")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--modes", default="new,keepalive", help="nginx modes: new,keepalive")
    parser.add_argument("--seconds", type=int, default=4, help="wrk duration per cell")
    parser.add_argument("--rounds", type=int, default=3, help="alternating repeats (median)")
    parser.add_argument("--connections", type=int, help="override every scenario's connections")
    parser.add_argument(
        "--fcgigw-arg", action="append", default=[], help="extra fcgigw option (repeatable)"
    )
    parser.add_argument(
        "--write-results",
        action="store_true",
        help="write benchmarks/RESULTS.md and benchmarks/results.png",
    )
    args = parser.parse_args(argv)
    for option, known in (
        ("targets", TARGETS),
        ("scenarios", SCENARIOS),
        ("modes", KEEPALIVE_MODES),
    ):
        names = getattr(args, option).split(",")
        if unknown := set(names) - set(known):
            parser.error(
                f"unknown {option}: {', '.join(sorted(unknown))}; choose from {', '.join(known)}"
            )
        setattr(args, option, names)
    return args


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so every started process group is stopped on the way."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not shutil.which("wrk") or not nginx_binary():
        raise SystemExit("wrk and nginx are needed: bash benchmarks/setup.sh")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    targets = [TARGETS[name] for name in args.targets]
    started_at, load_before = time.monotonic(), os.getloadavg()[0]
    if load_before > 1:
        print(
            f"warning: load average {load_before:.1f}: other work will skew the numbers",
            file=sys.stderr,
        )
    rundir = workdir()
    try:
        results = run_rounds(args, targets, rundir)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
    minutes = (time.monotonic() - started_at) / 60
    about = f"{args.rounds} alternating rounds of {args.seconds} s per cell, {minutes:.1f} min, "
    about += f"1-min load average {load_before:.2f} before and {os.getloadavg()[0]:.2f} after"
    print(f"\n{tables(results, args.targets)}{about}")
    if args.write_results:
        write_results(results, args, argv, about)


def write_results(
    results: Results, args: argparse.Namespace, argv: list[str] | None, about: str
) -> None:
    """RESULTS.md, with the command that made it, and the chart beside it."""
    command = "python3 benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    title = f"hello world through nginx (1 worker): req/s, median of {args.rounds} rounds"
    picture = HERE / "results.png"
    why_not = chart.write(results, args.targets, title, about, picture)
    if why_not:
        print(f"no chart: {why_not}", file=sys.stderr)
    text = results_markdown(
        results, args.targets, command.strip(), about, None if why_not else picture.name
    )
    (HERE / "RESULTS.md").write_text(text)
    print(f"wrote {HERE / 'RESULTS.md'}" + ("" if why_not else f" and {picture}"))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
