"""The scoreboard: what every process of a pool knows about the others, in shared memory.

Like php-fpm's scoreboard, it is one anonymous shared mapping (``mmap(-1, …)`` is
MAP_SHARED | MAP_ANONYMOUS) made by the supervisor before it forks, so every worker inherits
it: a header for the pool, written only by the supervisor (or by the one process without
--workers), and one fixed-size slot per worker. A slot has two parts with one writer each:

- the supervisor's (pid, generation, start time, phase), written before the fork or after
  the worker is reaped, and the phase as one byte;
- the worker's figures, published by its clock every lifecycle.TICK_SECONDS under a
  sequence lock (odd while writing; a reader retries until it reads an even, unchanged
  sequence), so a reader never mixes two publications.

When a worker is reaped, its counters are added to the header's "retired" totals, so the
pool's totals survive recycling. Times are wall-clock for display and CLOCK_MONOTONIC
(``time.monotonic``, the same clock in every process of the machine) for ages.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass, replace

MAGIC = b"fcgigw1\0"
#: Bytes kept of the request URI shown for a worker (php-fpm keeps 1024 of its query).
URI_BYTES = 240
METHOD_BYTES = 16

#: magic, slots, supervisor pid, start time (wall), pm, min, max, max busy reached,
#: retired accepted / served / slow, recycled stuck / memory.
_HEADER = struct.Struct("<8sIId8sIII QQQ QQ")
#: pid, generation, start time (wall), phase.
_OWNER = struct.Struct("<IIdB")
#: sequence, heartbeat, last active, in flight, accepted, served, slow, recycle reason,
#: oldest request: started (monotonic), method, URI.
_FIGURES = struct.Struct(f"<I dd I QQQ B d{METHOD_BYTES}s{URI_BYTES}s")
_SEQUENCE = struct.Struct("<I")
_OWNER_AT = 0
_FIGURES_AT = 32  # after _OWNER, 8-aligned
SLOT_BYTES = _FIGURES_AT + ((_FIGURES.size + 7) // 8) * 8
_PHASE_AT = _OWNER.size - 1

# A slot's phase, as the supervisor sees its worker.
FREE, STARTING, SERVING, STOPPING = 0, 1, 2, 3
PHASES = {FREE: "free", STARTING: "starting", SERVING: "serving", STOPPING: "stopping"}

# Why a worker asks to be replaced (it keeps serving until its replacement does).
NO_RECYCLE, RECYCLE_STUCK, RECYCLE_MEMORY = 0, 1, 2
RECYCLE_REASONS = {RECYCLE_STUCK: "stuck", RECYCLE_MEMORY: "memory"}

_READ_ATTEMPTS = 100


@dataclass(frozen=True, slots=True)
class Figures:
    """What a worker publishes about itself."""

    heartbeat: float = 0.0
    last_active: float = 0.0
    in_flight: int = 0
    accepted: int = 0
    served: int = 0
    slow: int = 0
    recycle: int = NO_RECYCLE
    request_started: float = 0.0  # its oldest request in flight (0: none)
    method: str = ""
    uri: str = ""


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One used slot, as read."""

    index: int
    pid: int
    generation: int
    started: float
    phase: int
    figures: Figures


@dataclass(frozen=True, slots=True)
class PoolHeader:
    """The pool-wide part."""

    supervisor_pid: int
    started: float
    process_manager: str
    workers_min: int
    workers_max: int
    max_busy: int
    retired_accepted: int
    retired_served: int
    retired_slow: int
    recycled_stuck: int
    recycled_memory: int


class Scoreboard:
    """The shared mapping; see the module docstring."""

    def __init__(
        self, slots: int, process_manager: str = "single", bounds: tuple[int, int] = (1, 1)
    ) -> None:
        self.slots = slots
        self.memory = mmap.mmap(-1, _HEADER.size + slots * SLOT_BYTES)
        self._header = PoolHeader(0, time.time(), process_manager, *bounds, 0, 0, 0, 0, 0, 0)
        self.write_header(self._header)

    # -- the header (supervisor) -------------------------------------------------------------

    def write_header(self, header: PoolHeader) -> None:
        self._header = header
        _HEADER.pack_into(
            self.memory,
            0,
            MAGIC,
            self.slots,
            header.supervisor_pid,
            header.started,
            header.process_manager.encode(),
            header.workers_min,
            header.workers_max,
            header.max_busy,
            header.retired_accepted,
            header.retired_served,
            header.retired_slow,
            header.recycled_stuck,
            header.recycled_memory,
        )

    def header(self) -> PoolHeader:
        values = _HEADER.unpack_from(self.memory, 0)
        pm = values[4].rstrip(b"\0").decode()
        return PoolHeader(values[2], values[3], pm, *values[5:])

    # -- slots (supervisor) ----------------------------------------------------------------

    def _at(self, index: int) -> int:
        return _HEADER.size + index * SLOT_BYTES

    def claim(self, pid: int, generation: int) -> int | None:
        """A free slot for a worker about to start (pid 0 until the fork says it); None
        when every slot is taken (the worker then serves unseen)."""
        for index in range(self.slots):
            at = self._at(index)
            if self.memory[at + _PHASE_AT] == FREE:
                self.memory[at : at + SLOT_BYTES] = bytes(SLOT_BYTES)
                _OWNER.pack_into(self.memory, at, pid, generation, time.time(), STARTING)
                return index
        return None

    def set_pid(self, index: int, pid: int) -> None:
        struct.pack_into("<I", self.memory, self._at(index), pid)

    def set_phase(self, index: int, phase: int) -> None:
        self.memory[self._at(index) + _PHASE_AT] = phase

    def release(self, index: int) -> Figures:
        """The worker is gone: add its counters to the retired totals, free its slot."""
        figures = self.figures(index)
        header = self._header
        self.write_header(
            replace(
                header,
                retired_accepted=header.retired_accepted + figures.accepted,
                retired_served=header.retired_served + figures.served,
                retired_slow=header.retired_slow + figures.slow,
            )
        )
        self.set_phase(index, FREE)
        return figures

    def count(self, **increments: int) -> None:
        """Add to header counters (max_busy is raised, not added to)."""
        header = self._header
        changes = {name: getattr(header, name) + value for name, value in increments.items()}
        if "max_busy" in increments:
            changes["max_busy"] = max(header.max_busy, increments["max_busy"])
        self.write_header(replace(header, **changes))

    # -- figures (the worker writes its own, anyone reads) --------------------------------

    def publish(self, index: int, figures: Figures) -> None:
        """Write a worker's figures (only that worker's clock calls this)."""
        at = self._at(index) + _FIGURES_AT
        memory = self.memory
        (sequence,) = _SEQUENCE.unpack_from(memory, at)
        _SEQUENCE.pack_into(memory, at, (sequence + 1) & 0xFFFFFFFF)  # odd: writing
        _FIGURES.pack_into(
            memory,
            at,
            (sequence + 1) & 0xFFFFFFFF,
            figures.heartbeat,
            figures.last_active,
            figures.in_flight,
            figures.accepted,
            figures.served,
            figures.slow,
            figures.recycle,
            figures.request_started,
            figures.method.encode("latin-1", "replace")[:METHOD_BYTES],
            _clip(figures.uri.encode("latin-1", "replace")),
        )
        _SEQUENCE.pack_into(memory, at, (sequence + 2) & 0xFFFFFFFF)

    def figures(self, index: int) -> Figures:
        at = self._at(index) + _FIGURES_AT
        values: tuple[object, ...] = ()
        for _ in range(_READ_ATTEMPTS):
            values = _FIGURES.unpack_from(self.memory, at)
            (after,) = _SEQUENCE.unpack_from(self.memory, at)
            if not values[0] % 2 and after == values[0]:  # type: ignore[operator]
                break
            time.sleep(0)
        (_, beat, active, flight, accepted, served, slow, recycle, started, method, uri) = values
        return Figures(
            beat,  # type: ignore[arg-type]
            active,  # type: ignore[arg-type]
            flight,  # type: ignore[arg-type]
            accepted,  # type: ignore[arg-type]
            served,  # type: ignore[arg-type]
            slow,  # type: ignore[arg-type]
            recycle,  # type: ignore[arg-type]
            started,  # type: ignore[arg-type]
            method.rstrip(b"\0").decode("latin-1"),  # type: ignore[attr-defined]
            uri.rstrip(b"\0").decode("latin-1"),  # type: ignore[attr-defined]
        )

    def workers(self) -> list[WorkerView]:
        """Every used slot."""
        views = []
        for index in range(self.slots):
            pid, generation, started, phase = _OWNER.unpack_from(self.memory, self._at(index))
            if phase != FREE:
                views.append(
                    WorkerView(index, pid, generation, started, phase, self.figures(index))
                )
        return views


def _clip(uri: bytes) -> bytes:
    if len(uri) <= URI_BYTES:
        return uri
    return uri[: URI_BYTES - 3] + b"..."


@dataclass(frozen=True, slots=True)
class Seat:
    """Where one process reports: its scoreboard and slot."""

    board: Scoreboard
    index: int

    def publish(self, figures: Figures) -> None:
        self.board.publish(self.index, figures)

    @classmethod
    def alone(cls) -> Seat:
        """The scoreboard of a process without a supervisor: one slot, its own."""
        board = Scoreboard(1)
        header = board.header()
        board.write_header(replace(header, supervisor_pid=os.getpid()))
        index = board.claim(os.getpid(), 0)
        assert index is not None
        board.set_phase(index, SERVING)
        return cls(board, index)
