"""The issues' targets, judged against one run: a ratio or a bound, and pass or FAIL.

Issue 14's are the current ones; issue 6's stay below them, so a change shows against both.
A target whose cells were not part of the run is left out; one whose cells did not run
shows "n/a".
"""

from __future__ import annotations

from dataclasses import dataclass

from summary import MODES, Measurement, Results, Summary, markdown, ran, summarize

#: fcgigw's WSGI and ASGI targets, pure Python and compiled (mypyc): each build is judged.
BUILDS = (("fcgigw-wsgi", "fcgigw-asgi"), ("fcgigw-wsgi-mypyc", "fcgigw-asgi-mypyc"))
FCGIGW = tuple(name for build in BUILDS for name in build)
BOTH = (False, True)
METRICS = {"rps": "req/s", "p99": "p99", "rss": "peak RSS", "idle": "idle worker RSS"}


@dataclass(frozen=True)
class Goal:
    """``ours`` against ``theirs`` (or a bound) in one scenario and nginx mode."""

    issue: int
    scenario: str
    keepalive: bool | None  # None: the worst of both nginx modes
    ours: str
    theirs: str  # a target's name, or "" for an absolute bound
    #: rps: ours/theirs >= bound; p99: ours <= theirs; rss: peak < bound MiB;
    #: idle: the worker's RSS after start and one request <= bound MiB
    metric: str
    bound: float


def _issue_14() -> list[Goal]:
    goals = []
    for wsgi, asgi in BUILDS:
        goals += [
            # Each against the peer as its users deploy it: HTTP peers get upstream keep-alive.
            Goal(14, "hello", True, wsgi, "granian-wsgi", "rps", 1.0),
            Goal(14, "hello", True, asgi, "uvicorn", "rps", 1.1),
            Goal(14, "hello", True, asgi, "granian-asgi", "rps", 1.2),
            # nginx's default: no fastcgi_keep_conn, a new connection per request.
            Goal(14, "hello", False, wsgi, "uwsgi", "rps", 1.2),
            Goal(14, "hello", False, asgi, "uwsgi", "rps", 1.0),
        ]
    for ours in FCGIGW:
        goals += [
            Goal(14, scenario, keepalive, ours, "uwsgi", "rps", 1.5)
            for scenario in ("stream-1m", "upload-200m")
            for keepalive in BOTH
        ]
        goals += [
            Goal(14, scenario, keepalive, ours, "", "rss", 64.0)
            for scenario in ("upload-200m", "upload-200m-slow")
            for keepalive in BOTH
        ]
        goals.append(Goal(14, "hello", None, ours, "", "idle", 30.0))
    return goals


def _issue_6() -> list[Goal]:
    goals = [Goal(6, "hello", k, "fcgigw-wsgi", peer, "rps", ratio) for peer, ratio in
             (("uwsgi", 1.0), ("fcgisgi-wsgi", 2.5), ("flup", 5.0)) for k in BOTH]  # fmt: skip
    goals += [
        Goal(6, "hello", False, "fcgigw-asgi", "uwsgi", "rps", 1.1),
        Goal(6, "hello", True, "fcgigw-asgi", "fcgisgi-asgi", "rps", 1.2),
        *(Goal(6, "hello", k, "fcgigw-asgi", "uvicorn", "rps", 1.1) for k in BOTH),
    ]
    for ours in BUILDS[0]:
        goals += [Goal(6, "hello", k, ours, "uwsgi", "p99", 1.0) for k in BOTH]
        goals += [Goal(6, "stream-1m", k, ours, "uwsgi", "rps", 1.0) for k in BOTH]
    return goals


GOALS = _issue_14() + _issue_6()


def _runs(goal: Goal, target: str, results: Results) -> list[Measurement | str] | None:
    """The runs of ``target``'s side of ``goal``, or None where the run did not include it."""
    modes = BOTH if goal.keepalive is None else (goal.keepalive,)
    keys = [(goal.scenario, target, keepalive) for keepalive in modes]
    runs = [run for key in keys for run in results.get(key, [])]
    return runs if ran(runs) else None


def judge(goal: Goal, ours: Summary, theirs: Summary | None) -> tuple[str, str, str]:
    """(measured, wanted, verdict) for one goal."""
    if goal.metric in ("rss", "idle"):
        mib = ours.peak_rss_mib if goal.metric == "rss" else ours.idle_worker_rss_mib
        ok = mib < goal.bound if goal.metric == "rss" else mib <= goal.bound
        wanted = f"{'<' if goal.metric == 'rss' else '<='} {goal.bound:.0f} MiB"
        return f"{mib:.1f} MiB", wanted, _verdict(ok)
    assert theirs is not None  # every ratio and p99 goal names a peer
    if goal.metric == "p99":
        wanted = f"<= {theirs.p99_ms:.2f} ms"
        return f"{ours.p99_ms:.2f} ms", wanted, _verdict(ours.p99_ms <= theirs.p99_ms)
    ratio = ours.requests_per_second / theirs.requests_per_second
    return f"{ratio:.2f}x", f">= {goal.bound:.1f}x", _verdict(ratio >= goal.bound)


def round_ratios(ours: list[Measurement | str], theirs: list[Measurement | str]) -> list[float]:
    """ours/theirs req/s round by round (the rounds alternate the targets' order, so each
    round's pair ran minutes apart at most), for the rounds where both ran."""
    return [
        mine.wrk.requests_per_second / peer.wrk.requests_per_second
        for mine, peer in zip(ours, theirs, strict=False)
        if isinstance(mine, Measurement) and isinstance(peer, Measurement)
        if peer.wrk.requests_per_second > 0
    ]


def _spread(ratios: list[float]) -> str:
    """How far the rounds' own ratios range: near a target, a median means little when this
    is wide (this 2-core machine's rounds differ by up to 40%)."""
    if len(ratios) < 2:
        return ""
    return f" ({min(ratios):.2f} to {max(ratios):.2f} by round)"


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def _row(goal: Goal, results: Results) -> tuple[str, ...] | None:
    ours_runs = _runs(goal, goal.ours, results)
    theirs_runs = _runs(goal, goal.theirs, results) if goal.theirs else []
    if ours_runs is None or theirs_runs is None:
        return None
    versus = f" vs {goal.theirs}" if goal.theirs else ""
    label = f"{goal.ours}{versus}: {goal.scenario} {METRICS[goal.metric]}"
    mode = "worst of both" if goal.keepalive is None else MODES[goal.keepalive]
    ours = summarize(ours_runs)
    theirs = summarize(theirs_runs) if goal.theirs else None
    if isinstance(ours, str) or isinstance(theirs, str):
        return label, mode, "-", "-", "n/a (not run)"
    measured, wanted, verdict = judge(goal, ours, theirs)
    if goal.metric == "rps":
        measured += _spread(round_ratios(ours_runs, theirs_runs))
    return label, mode, measured, wanted, verdict


_READING = (
    "A ratio is of the medians' req/s; in brackets, the lowest and highest of the rounds' own "
    "ratios (each round runs the targets one after the other, in alternating order).\n\n"
)


def goals_section(results: Results) -> str:
    """One table per issue, of the goals whose cells were part of this run."""
    parts = []
    for issue in sorted({goal.issue for goal in GOALS}, reverse=True):
        rows = [row for goal in GOALS if goal.issue == issue and (row := _row(goal, results))]
        if rows:
            passed = sum(row[-1] == "pass" for row in rows)
            table = markdown(("target", "nginx", "measured", "wanted", "result"), rows)
            parts.append(f"### Targets (issue {issue}): {passed} of {len(rows)} pass\n\n")
            parts.append(_READING)
            parts.append(table + "\n\n")
    return "".join(parts)
