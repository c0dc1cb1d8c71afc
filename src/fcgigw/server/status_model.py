"""What the status page reports: the pool, its listeners and its workers, as plain data
read from the scoreboard (status.py) and written out in a format (status_format.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ListenerStatus:
    address: str
    queued: int | None  # None: the OS does not say
    limit: int | None


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    pid: int
    state: str  # starting, idle, busy, stopping
    generation: int
    started: float  # wall clock
    requests_served: int
    in_flight: int
    rss_bytes: int | None
    method: str
    uri: str
    request_age: float | None
    recycle: str  # why it asked to be replaced, or ""


@dataclass(frozen=True, slots=True)
class PoolStatus:
    pool: str
    process_manager: str
    started: float
    uptime: float
    accepted: int
    served: int
    in_flight: int
    slow: int
    total: int
    busy: int
    idle: int
    max_busy: int
    recycled_stuck: int
    recycled_memory: int
    listeners: list[ListenerStatus]
    workers: list[WorkerStatus]
