"""Turn the rounds' measurements into tables, the goals of issue 6, and RESULTS.md.

Medians over rounds for throughput and latency (drift and one-off stalls move a median
least), the sum of errors (one error in any round should show), and the maximum of the
peak RSS (a memory bound is about the worst case).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import WrkResult, nginx_binary
from targets import HERE, SCENARIOS, TARGETS, python

MiB = 1024 * 1024
MODES = {False: "new conn", True: "keepalive"}


@dataclass(frozen=True)
class Measurement:
    """One wrk run against one started server, and the peak RSS of the server's tree."""

    wrk: WrkResult
    peak_rss_bytes: int


#: (scenario, target, keepalive) → one entry per round: a Measurement, or why it did not run
Results = dict[tuple[str, str, bool], list[Measurement | str]]


@dataclass(frozen=True)
class Summary:
    """The rounds of one cell reduced to one row."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_rss_mib: float
    rounds: int


def summarize(runs: list[Measurement | str]) -> Summary | str:
    """The cell's summary, or the reason it never ran."""
    done = [run for run in runs if isinstance(run, Measurement)]
    if not done:
        return next((run for run in runs if isinstance(run, str)), "not run")
    return Summary(
        requests_per_second=statistics.median(m.wrk.requests_per_second for m in done),
        p50_ms=statistics.median(m.wrk.p50_ms for m in done),
        p99_ms=statistics.median(m.wrk.p99_ms for m in done),
        errors=sum(m.wrk.errors for m in done),
        peak_rss_mib=max(m.peak_rss_bytes for m in done) / MiB,
        rounds=len(done),
    )


def markdown(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def scenario_table(results: Results, scenario: str, targets: list[str]) -> str:
    header = ("target", "nginx", "req/s", "p50 ms", "p99 ms", "errors", "peak RSS MiB")
    rows = []
    for keepalive in (False, True):
        for name in targets:
            if (scenario, name, keepalive) not in results:
                continue
            cell = summarize(results[scenario, name, keepalive])
            if isinstance(cell, str):
                rows.append((name, MODES[keepalive], cell, "", "", "", ""))
                continue
            rows.append(
                (
                    name,
                    MODES[keepalive],
                    _rate(cell.requests_per_second),
                    f"{cell.p50_ms:.2f}",
                    f"{cell.p99_ms:.2f}",
                    str(cell.errors),
                    f"{cell.peak_rss_mib:.0f}",
                )
            )
    return markdown(header, rows)


def _rate(requests_per_second: float) -> str:
    """Thousands separated; one decimal below 100, where a 200 MiB upload lands."""
    return (
        f"{requests_per_second:,.0f}"
        if requests_per_second >= 100
        else f"{requests_per_second:.1f}"
    )


@dataclass(frozen=True)
class Goal:
    """One target of issue 6: ``ours`` against ``theirs`` (or a bound) in one cell."""

    scenario: str
    keepalive: bool
    ours: str
    theirs: str  # a target's name, or "" for an absolute bound
    metric: str  # rps: ours/theirs >= bound; p99: ours <= theirs; rss: ours < bound MiB
    bound: float


def _goals() -> list[Goal]:
    both = (False, True)
    goals = [Goal("hello", k, "fcgigw-wsgi", peer, "rps", ratio) for peer, ratio in
             (("uwsgi", 1.0), ("fcgisgi-wsgi", 2.5), ("flup", 5.0)) for k in both]  # fmt: skip
    goals += [
        Goal("hello", False, "fcgigw-asgi", "uwsgi", "rps", 1.1),
        Goal("hello", True, "fcgigw-asgi", "fcgisgi-asgi", "rps", 1.2),
        *(Goal("hello", k, "fcgigw-asgi", "uvicorn", "rps", 1.1) for k in both),
    ]
    for ours in ("fcgigw-wsgi", "fcgigw-asgi"):
        goals += [Goal("hello", k, ours, "uwsgi", "p99", 1.0) for k in both]
        goals += [Goal("stream-1m", k, ours, "uwsgi", "rps", 1.0) for k in both]
        goals += [Goal("upload-200m", k, ours, "", "rss", 64.0) for k in both]
    return goals


GOALS = _goals()


def judge(goal: Goal, results: Results) -> tuple[str, str, str]:
    """(measured, wanted, verdict) for one goal; "n/a" when a side did not run."""
    ours = summarize(results.get((goal.scenario, goal.ours, goal.keepalive), []))
    theirs = summarize(results.get((goal.scenario, goal.theirs, goal.keepalive), []))
    if isinstance(ours, str) or (goal.theirs and isinstance(theirs, str)):
        return "-", "-", "n/a (not run)"
    if goal.metric == "rss":
        return (
            f"{ours.peak_rss_mib:.0f} MiB",
            f"< {goal.bound:.0f} MiB",
            _verdict(ours.peak_rss_mib < goal.bound),
        )
    assert isinstance(theirs, Summary)
    if goal.metric == "p99":
        wanted = f"<= {theirs.p99_ms:.2f} ms"
        return f"{ours.p99_ms:.2f} ms", wanted, _verdict(ours.p99_ms <= theirs.p99_ms)
    ratio = ours.requests_per_second / theirs.requests_per_second
    return f"{ratio:.2f}x", f">= {goal.bound:.1f}x", _verdict(ratio >= goal.bound)


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def goals_table(results: Results) -> str:
    """The goals whose cells were part of this run, judged."""
    rows = []
    for goal in GOALS:
        sides = [(goal.scenario, name, goal.keepalive) for name in (goal.ours, goal.theirs) if name]
        if not all(side in results for side in sides):
            continue
        what = {"rps": "req/s", "p99": "p99", "rss": "peak RSS"}[goal.metric]
        versus = f" vs {goal.theirs}" if goal.theirs else ""
        label = f"{goal.ours}{versus}: {goal.scenario} {what}"
        rows.append((label, MODES[goal.keepalive], *judge(goal, results)))
    return markdown(("goal", "nginx", "measured", "wanted", "result"), rows)


def tables(results: Results, targets: list[str]) -> str:
    """Every scenario's table, then the goals: what run.py prints and RESULTS.md holds."""
    parts = []
    for scenario in SCENARIOS.values():
        if any(key[0] == scenario.name for key in results):
            parts.append(f"### {scenario.name}: {scenario.about}\n\n")
            parts.append(scenario_table(results, scenario.name, targets) + "\n\n")
    goals = goals_table(results)
    if goals.count("\n") > 1:
        parts.append("### Goals (issue 6)\n\n" + goals + "\n")
    return "".join(parts)


def _output(argv: list[str]) -> str:
    """The first line a ``--version`` command prints (wrk prints it and exits 1)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not installed"
    return ((done.stdout + done.stderr).strip().splitlines() or ["-"])[0]


def fcgigw_commit() -> str:
    """HEAD's commit, read from .git without running git (a plain checkout has no git)."""
    git = HERE.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor())  # fmt: skip
    debian = Path("/etc/debian_version")
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "Debian": debian.read_text().strip() if debian.exists() else "-",
    }


def versions() -> dict[str, str]:
    packages = ("fcgigw", "flup", "fcgisgi", "gunicorn", "uvicorn", "uvloop", "httptools")
    script = (
        "import importlib.metadata as m, sys\n"
        "print(sys.version.split()[0])\n"
        f"for p in {packages!r}:\n"
        "    try: print(m.version(p))\n"
        "    except m.PackageNotFoundError: print('not installed')\n"
    )
    done = subprocess.run([python(), "-c", script], capture_output=True, text=True, check=True)
    found = dict(zip(("python", *packages), done.stdout.split(), strict=True))
    found["fcgigw"] += f" (commit {fcgigw_commit()[:12]})"
    binary = nginx_binary()
    found["nginx"] = _output([binary, "-v"]).rpartition("/")[2] if binary else "not installed"
    found["uwsgi"] = _output(["uwsgi", "--version"])
    found["wrk"] = _output(["wrk", "--version"]).split(" [")[0].removeprefix("wrk ")
    return found


def results_markdown(results: Results, targets: list[str], command: str, about: str) -> str:
    """RESULTS.md: how it was made, on what, and the tables."""
    return (
        "# Benchmark results\n\n"
        f"Written by `{command}` ({about}). Regenerate it the same way; see the README's "
        "Benchmarks section for what each scenario does.\n\n"
        f"{markdown(('machine', ''), machine().items())}\n\n"
        f"{markdown(('software', 'version'), versions().items())}\n\n"
        f"{markdown(('target', 'nginx speaks', 'how it runs'), target_rows())}\n\n"
        f"{tables(results, targets)}"
    )


def target_rows() -> list[tuple[str, str, str]]:
    return [(t.name, t.upstream, t.about) for t in TARGETS.values()]


def targets_markdown() -> str:
    return markdown(("target", "nginx speaks", "how it runs"), target_rows())
