"""The rounds' measurements and their reduction to one row per cell.

Medians over rounds for throughput and latency (drift and one-off stalls move a median
least), the sum of errors (one error in any round should show), and the maximum of each
RSS (a memory bound is about the worst case).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from harness import CpuShares, WrkResult

MiB = 1024 * 1024
MODES = {False: "new conn", True: "keepalive"}


@dataclass(frozen=True)
class Measurement:
    """One wrk run against one started server: the peak RSS of the server's tree under the
    load, its worker's RSS after the one check request that came before the load, and the
    CPU per request of the server, nginx and wrk under the load."""

    wrk: WrkResult
    peak_rss_bytes: int
    idle_worker_rss_bytes: int
    cpu: CpuShares


#: (scenario, target, keepalive) → one entry per round: a Measurement, or why it did not
#: run ("-" where the target does not run that scenario or nginx mode)
Results = dict[tuple[str, str, bool], list[Measurement | str]]


@dataclass(frozen=True)
class Summary:
    """The rounds of one cell reduced to one row."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_rss_mib: float
    idle_worker_rss_mib: float
    #: Medians of CPU µs per request: the server's tree, nginx, wrk.
    server_cpu_us: float
    nginx_cpu_us: float
    load_cpu_us: float
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
        idle_worker_rss_mib=max(m.idle_worker_rss_bytes for m in done) / MiB,
        server_cpu_us=statistics.median(m.cpu.server_us for m in done),
        nginx_cpu_us=statistics.median(m.cpu.nginx_us for m in done),
        load_cpu_us=statistics.median(m.cpu.load_us for m in done),
        rounds=len(done),
    )


def ran(runs: list[Measurement | str]) -> bool:
    """Whether the cell is part of the run at all ("-" in every round: it is not)."""
    return any(run != "-" for run in runs)


def markdown(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def rate(requests_per_second: float) -> str:
    """Thousands separated; two decimals below 100, where a 200 MiB upload lands."""
    return (
        f"{requests_per_second:,.0f}"
        if requests_per_second >= 100
        else f"{requests_per_second:.2f}"
    )
