"""Turn the rounds' summaries into tables, the issues' targets and RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from goals import goals_section
from harness import nginx_binary
from summary import MODES, Results, markdown, ran, rate, summarize
from targets import HERE, SCENARIOS, TARGETS, python


def scenario_table(results: Results, scenario: str, targets: list[str]) -> str:
    header = ("target", "nginx", "req/s", "p50 ms", "p99 ms", "errors", "peak RSS MiB")
    header += ("CPU µs/request: server / nginx / wrk",)
    rows = []
    for keepalive in (False, True):
        for name in targets:
            runs = results.get((scenario, name, keepalive), [])
            if not ran(runs):
                continue
            cell = summarize(runs)
            if isinstance(cell, str):
                rows.append((name, MODES[keepalive], cell, "", "", "", "", ""))
                continue
            rows.append(
                (
                    name,
                    MODES[keepalive],
                    rate(cell.requests_per_second),
                    f"{cell.p50_ms:.2f}",
                    f"{cell.p99_ms:.2f}",
                    str(cell.errors),
                    f"{cell.peak_rss_mib:.0f}",
                    f"{cell.server_cpu_us:.1f} / {cell.nginx_cpu_us:.1f} / {cell.load_cpu_us:.1f}",
                )
            )
    return markdown(header, rows)


def idle_table(results: Results, targets: list[str]) -> str:
    """Each target's worker after start and one hello request, before any load: the
    largest over rounds and nginx modes."""
    rows = []
    for name in targets:
        runs = [run for k in (False, True) for run in results.get(("hello", name, k), [])]
        if ran(runs):
            cell = summarize(runs)
            text = cell if isinstance(cell, str) else f"{cell.idle_worker_rss_mib:.1f}"
            rows.append((name, text))
    return markdown(("target", "idle worker RSS MiB"), rows)


def tables(results: Results, targets: list[str]) -> str:
    """Every scenario's table, the idle RSS, then the targets: what run.py prints and
    RESULTS.md holds."""
    parts = []
    for scenario in SCENARIOS.values():
        if any(key[0] == scenario.name for key in results):
            seconds = scenario.min_seconds
            at_least = f"; wrk runs {seconds} s or more" if seconds else ""
            parts.append(f"### {scenario.name}: {scenario.about}{at_least}\n\n")
            parts.append(scenario_table(results, scenario.name, targets) + "\n\n")
    if any(key[0] == "hello" for key in results):
        parts.append("### Idle worker RSS: after start and one hello request\n\n")
        parts.append(idle_table(results, targets) + "\n\n")
    parts.append(goals_section(results))
    return "".join(parts)


def _output(argv: list[str]) -> str:
    """The first line a ``--version`` command prints (wrk prints it and exits 1)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not installed"
    return ((done.stdout + done.stderr).strip().splitlines() or ["-"])[0]


def _git_dirs() -> tuple[Path, Path]:
    """(this checkout's git dir, the repository's): a worktree's .git is a file naming its
    own dir, whose branches live in the main repository's dir (named by its commondir)."""
    git = HERE.parent / ".git"
    if git.is_file():
        git = (HERE.parent / git.read_text().strip().removeprefix("gitdir: ")).resolve()
    common = git / "commondir"
    return git, (git / common.read_text().strip()).resolve() if common.exists() else git


def fcgigw_commit() -> str:
    """HEAD's commit, read from .git without running git (a plain checkout has no git)."""
    try:
        git, common = _git_dirs()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        for directory in (git, common):
            if (directory / ref).exists():
                return (directory / ref).read_text().strip()
        for line in (common / "packed-refs").read_text().splitlines():
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
    packages = ["fcgigw", "flup", "fcgisgi", "gunicorn", "uvicorn", "granian"]
    packages += ["uvloop", "httptools"]  # what uvicorn[standard] runs on
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


COMMANDS = """\
bash benchmarks/setup.sh   # once, as root: apt packages; peers and matplotlib in benchmarks/.venv
{command}
benchmarks/.venv/bin/python benchmarks/server_micro.py --interface wsgi [--keepalive]
benchmarks/.venv/bin/python benchmarks/server_micro.py --interface asgi [--keepalive]
"""


def results_markdown(
    results: Results, targets: list[str], command: str, about: str, chart: str | None
) -> str:
    """RESULTS.md: how it was made, on what, the chart (a file name beside it) and the
    tables."""
    picture = f"![hello req/s per target and nginx mode]({chart})\n\n" if chart else ""
    return (
        "# Benchmark results\n\n"
        f"Written by `{command}` ({about}). Regenerate it the same way; see the README's "
        "Benchmarks section for what each scenario does. The commands:\n\n"
        f"```sh\n{COMMANDS.format(command=command)}```\n\n"
        f"{picture}"
        f"{markdown(('machine', ''), machine().items())}\n\n"
        f"{markdown(('software', 'version'), versions().items())}\n\n"
        f"{targets_markdown()}\n\n"
        f"{tables(results, targets)}"
    )


def target_rows() -> list[tuple[str, str, str]]:
    rows = []
    for target in TARGETS.values():
        speaks = target.upstream + ("" if False in target.modes else ", keepalive only")
        rows.append((target.name, speaks, target.about))
    return rows


def targets_markdown() -> str:
    return markdown(("target", "nginx speaks", "how it runs"), target_rows())
