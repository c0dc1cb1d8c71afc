"""The status page's three formats: php-fpm-like text, JSON, and OpenMetrics text (Prometheus).

The OpenMetrics text is written here (OpenMetrics 1.0: counters' samples end in ``_total``,
the exposition ends with ``# EOF``) rather than with prometheus_client, which would be a
dependency for a dozen lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .status_model import PoolStatus

OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _when(stamp: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(stamp))


def _queue(status: PoolStatus) -> tuple[str, str]:
    known = [item for item in status.listeners if item.queued is not None]
    if not known:
        return "unknown", "unknown"
    return str(sum(i.queued or 0 for i in known)), str(sum(i.limit or 0 for i in known))


def text(status: PoolStatus) -> str:
    """php-fpm's status page, with fcgigw's figures (one block per worker, as its ?full)."""
    queued, limit = _queue(status)
    rows: list[tuple[str, object]] = [
        ("pool", status.pool),
        ("process manager", status.process_manager),
        ("start time", _when(status.started)),
        ("start since", int(status.uptime)),
        ("accepted conn", status.accepted),
        ("requests served", status.served),
        ("requests in flight", status.in_flight),
        ("slow requests", status.slow),
        ("listen queue", queued),
        ("listen queue len", limit),
        ("idle processes", status.idle),
        ("active processes", status.busy),
        ("total processes", status.total),
        ("max active processes", status.max_busy),
        ("recycled (stuck)", status.recycled_stuck),
        ("recycled (memory)", status.recycled_memory),
    ]
    lines = [f"{name + ':':<24}{value}" for name, value in rows]
    for worker in status.workers:
        age = f"{worker.request_age:.3f}" if worker.request_age is not None else "-"
        rss = worker.rss_bytes if worker.rss_bytes is not None else "unknown"
        state = worker.state + (f" (to be replaced: {worker.recycle})" if worker.recycle else "")
        block: list[tuple[str, object]] = [
            ("pid", worker.pid),
            ("state", state),
            ("start time", _when(worker.started)),
            ("requests", worker.requests_served),
            ("in flight", worker.in_flight),
            ("rss bytes", rss),
            ("request method", worker.method or "-"),
            ("request URI", worker.uri or "-"),
            ("request age seconds", age),
        ]
        lines += ["", "*" * 24] + [f"{name + ':':<24}{value}" for name, value in block]
    return "\n".join(lines) + "\n"


def as_json(status: PoolStatus) -> str:
    data: dict[str, Any] = asdict(status)
    return json.dumps(data, indent=1) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def openmetrics(status: PoolStatus) -> str:
    """OpenMetrics 1.0 text: pool gauges and counters, then one series per worker."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Sequence[tuple[str, object]]) -> None:
        out.append(f"# TYPE fcgigw_{name} {kind}")
        out.append(f"# HELP fcgigw_{name} {help_text}")
        suffix = "_total" if kind == "counter" else ""
        out.extend(f"fcgigw_{name}{suffix}{labels} {value}" for labels, value in samples)

    family("start_time_seconds", "gauge", "When the pool started.", [("", status.started)])
    family("accepted_connections", "counter", "Connections accepted.", [("", status.accepted)])
    family("requests", "counter", "Requests served.", [("", status.served)])
    family("requests_in_flight", "gauge", "Requests running now.", [("", status.in_flight)])
    family("slow_requests", "counter", "Requests past slow_request_timeout.", [("", status.slow)])
    family(
        "processes",
        "gauge",
        "Worker processes by state.",
        [('{state="busy"}', status.busy), ('{state="idle"}', status.idle)],
    )
    family("max_busy_processes", "gauge", "Most busy processes seen.", [("", status.max_busy)])
    recycled = [('{reason="stuck"}', status.recycled_stuck)]
    recycled.append(('{reason="memory"}', status.recycled_memory))
    family("recycled_workers", "counter", "Workers replaced, by reason.", recycled)
    known = [item for item in status.listeners if item.queued is not None]
    if known:
        queue = [(f'{{listener="{_label(i.address)}"}}', i.queued) for i in known]
        limit = [(f'{{listener="{_label(i.address)}"}}', i.limit) for i in known]
        family("listen_queue", "gauge", "Connections waiting to be accepted.", queue)
        family("listen_queue_limit", "gauge", "The accept queue's size.", limit)
    workers = status.workers
    family(
        "worker_requests",
        "counter",
        "Requests served by the worker.",
        [(f'{{pid="{w.pid}"}}', w.requests_served) for w in workers],
    )
    family(
        "worker_requests_in_flight",
        "gauge",
        "Requests the worker runs now.",
        [(f'{{pid="{w.pid}"}}', w.in_flight) for w in workers],
    )
    family(
        "worker_resident_memory_bytes",
        "gauge",
        "The worker's RSS.",
        [(f'{{pid="{w.pid}"}}', w.rss_bytes) for w in workers if w.rss_bytes is not None],
    )
    family(
        "worker_request_age_seconds",
        "gauge",
        "How long the worker's oldest request has run.",
        [(f'{{pid="{w.pid}"}}', round(w.request_age, 3)) for w in workers if w.request_age],
    )
    out.append("# EOF")
    return "\n".join(out) + "\n"


FORMATS: dict[str, tuple[str, Callable[[PoolStatus], str]]] = {
    "text": ("text/plain; charset=utf-8", text),
    "json": ("application/json", as_json),
    "openmetrics": (OPENMETRICS_TYPE, openmetrics),
}
