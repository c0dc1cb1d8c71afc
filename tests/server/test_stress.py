"""A seeded stress test over the real wire (fcgigw in a subprocess, raw FastCGI from client
threads; tests/fcgi_wire.py), for WSGI and ASGI, in one process (then its threads, fds and TMPDIR
are accounted for) and with two workers reloaded by SIGHUP under the load.

Each thread picks seeded episodes: kept connections, multiplexed requests with shuffled records,
ABORT_REQUEST before the PARAMS end, mid-body or mid-response, clients that close or reset, slow
readers; most uploads spill past --request-body-memory-bytes, and some have empty STDIN records
amid them (mod_fcgid's). Responses carry their request's tag (tests/apps/stressapps.py) and ids
are never reused on a connection, so bytes under a wrong id and records after END_REQUEST are
seen. A failure gives the seed and the command that replays it.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fcgi_wire import READ_TIMEOUT, Conn, Hang, Req
from servers import RunningProcess, child_environment, run_fcgigw
from test_reliability import fd_targets, thread_count, wait_for

from fcgigw.client import parse_cgi_response
from fcgigw.protocol import ProtocolError, ProtocolStatus, RecordType

SEED = int(os.environ.get("FCGIGW_STRESS_SEED") or random.randrange(1 << 31))
LOAD_SECONDS = 4.5  # per mode; two modes per interface
MAX_EPISODES = 1500  # per mode, over all client threads
CLIENT_THREADS = 6
BODY_MEMORY_BYTES = 4096
BODY_SIZES = (0, 100, 3000, 5000, 20_000, 70_000, 200_000)  # most past BODY_MEMORY_BYTES
#: Before each piece of an upload, the chance of a stray empty STDIN record (mod_fcgid's).
STRAY_EMPTY_RECORD_CHANCE = 0.1
GRACEFUL_SECONDS = 5
RELOADS = 3
SLACK_FDS = 4  # and 2 threads, as in test_reliability: a leak grows with the load
TAG = re.compile(rb"@\d{8}@")
#: The lines of faulthandler's dump (see Phase.dump_stacks).
_STACK_LINE = re.compile(r"(Fatal Python error|Thread 0x|Current thread 0x|  File \")")


def pattern(tag: bytes, size: int) -> bytes:
    """``size`` bytes of ``tag`` repeated, as stressapps makes them."""
    return (tag * (size // len(tag) + 1))[:size]


@dataclass
class Phase:
    """One server under load: the deadline, episode budget and failures its clients share."""

    name: str
    server: RunningProcess
    reloads: bool
    deadline: float
    episodes: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stacks_dumped: bool = False

    def dump_stacks(self) -> None:
        """A client hangs: every server process writes its threads' stacks to the log
        (faulthandler on SIGABRT, enabled by PYTHONFAULTHANDLER) and dies, once. With the
        connection still open, they show who waits for what."""
        with self.lock:
            if self.stacks_dumped:
                return
            self.stacks_dumped = True
        pid = self.server.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for worker in [int(child) for child in children] or [pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGABRT)
        time.sleep(1)

    def take_episode(self) -> bool:
        with self.lock:
            going = not self.failures and self.episodes < MAX_EPISODES
            self.episodes += going
            return going and time.monotonic() < self.deadline


class Client:
    """One client thread: episodes chosen by its own seeded generator."""

    def __init__(self, phase: Phase, number: int) -> None:
        self.phase, self.number, self.tags = phase, number, 0
        self.rng = random.Random(f"{SEED}-{phase.name}-{number}")
        self.conns: list[Conn] = []
        self.outcomes: Counter[str] = Counter()

    def open(self, rcvbuf: int = 0) -> Conn:
        self.conns.append(Conn(self.phase.server.address, self.rng.randint(1, 5000), rcvbuf))
        return self.conns[-1]

    def tag(self) -> bytes:
        self.tags += 1
        return b"@%02d%06d@" % (self.number, self.tags)

    def echo(self, conn: Conn, keep: bool, sizes: tuple[int, ...] = BODY_SIZES) -> Req:
        """An upload in random pieces; only a part of it, with other ``sizes`` than these."""
        tag = self.tag()
        body = pattern(tag, self.rng.choice(sizes))
        req = conn.begin(f"/echo?tag={tag.decode()}", tag + b"\n" + body, keep, len(body), tag)
        if sizes is not BODY_SIZES:
            body = body[: self.rng.randint(1, len(body) - 1)]
        while body:
            if self.rng.random() < STRAY_EMPTY_RECORD_CHANCE:
                conn.stray_empty_record(req)
            conn.body(req, body[: (size := self.rng.randint(1, 70_000))])
            body = body[size:]
        conn.body(req, b"", end=sizes is BODY_SIZES)
        return req

    def stream(self, conn: Conn, keep: bool, chunks: int, size: int, delay: int = 0) -> Req:
        tag = self.tag()
        path = f"/stream?tag={tag.decode()}&chunks={chunks}&size={size}&delay={delay}"
        req = conn.begin(path, pattern(tag, size) * chunks, keep, 0, tag)
        conn.body(req, b"", end=True)
        return req

    def any_request(self, conn: Conn, keep: bool) -> Req:
        if self.rng.random() < 0.4:
            return self.stream(conn, keep, self.rng.randint(1, 8), self.rng.randint(1, 30_000))
        return self.echo(conn, keep)

    def check(self, conn: Conn, req: Req) -> None:
        others = [str(other) for other in conn.reqs.values() if other is not req]
        where = f"{req} (on its connection: {others}) {conn.trace}"
        if foreign := sorted({tag for tag in TAG.findall(req.stdout) if tag != req.tag}):
            raise AssertionError(f"{where}: bytes of {foreign[:3]} under its id")
        if req.end is None:
            if self.phase.reloads and req.after_idle and not req.stdout:
                self.outcomes["closed by a stop"] += 1  # found its connection idle, stopping
                return
            raise AssertionError(f"{where}: the connection closed without its END_REQUEST")
        status, _, _, body = parse_cgi_response(bytes(req.stdout))
        if req.aborted:
            if status == 200 and not req.expected.startswith(body):
                raise AssertionError(
                    f"{where}: aborted, and the body is not the expected one's start"
                )
            self.outcomes["aborted"] += 1
        elif req.end.protocol_status is not ProtocolStatus.REQUEST_COMPLETE:
            raise AssertionError(f"{where}: {req.end.protocol_status.name}")
        elif (status, body) != (200, req.expected):
            at = len(os.path.commonprefix([body, req.expected]))  # noqa: RUF071 (byte by byte)
            raise AssertionError(
                f"{where}: HTTP {status}, {len(body)} body bytes for {len(req.expected)}, "
                f"the first difference at {at}: {body[max(0, at - 20) : at + 20]!r}"
            )
        else:
            self.outcomes["complete"] += 1

    # -- episodes ---------------------------------------------------------------------------

    def kept(self) -> None:
        """Requests in sequence on a kept connection; if the last does not keep it, EOF."""
        conn, count, keep_last = self.open(), self.rng.randint(2, 5), self.rng.random() < 0.7
        for number in range(count):
            req = self.any_request(conn, keep=number < count - 1 or keep_last)
            conn.wait(req)
            self.check(conn, req)
            if conn.eof:
                return
            conn.kept = True
        if not keep_last:
            conn.pump(lambda: False)  # until EOF

    def multiplexed(self) -> None:
        """Two to four requests on one connection, their records sent in a shuffled order
        (each request's in sequence), one of them perhaps aborted on the way or at the end."""
        conn, rng = self.open(), self.rng
        reqs = [self.any_request(conn, keep=True) for _ in range(rng.randint(2, 4))]
        records, streams = conn.outbox[:], {req.rid: list[bytes]() for req in reqs}
        conn.outbox.clear()
        while records:  # split at record boundaries: 8-byte header, content, padding (§3.3)
            size = 8 + int.from_bytes(records[4:6], "big") + records[6]
            streams[int.from_bytes(records[2:4], "big")].append(bytes(records[:size]))
            del records[:size]
        doomed = rng.choice(reqs) if rng.random() < 0.3 else None
        idle_seen = False  # all requests begun so far had all their records sent
        while pending := [rid for rid, left in streams.items() if left]:
            record = streams[rid := rng.choice(pending)].pop(0)
            if record[1] == RecordType.BEGIN_REQUEST:  # the others may all have ended
                # Once they may have, a stop may close the connection: this request and
                # every later one may find it closing (the server drops their records).
                begun = [req for req in reqs if req.rid != rid and f"{req.rid}:1" in conn.trace]
                idle_seen |= bool(begun) and not any(streams[r.rid] for r in begun)
                conn.reqs[rid].after_idle = idle_seen
            conn.trace.append(f"{rid}:{record[1]}")
            conn.outbox += record
            if doomed is not None and rid == doomed.rid and rng.random() < 0.2:
                streams[rid] = []  # the rest of its input is never sent
                conn.abort(doomed)
                conn.trace.append(f"abort {rid}")
            conn.pump(lambda: True)
        if doomed is not None:
            conn.abort(doomed)  # mid-response, or after its END_REQUEST (then not sent)
        conn.wait(*reqs)
        for req in reqs:
            self.check(conn, req)

    def aborted(self) -> None:
        """ABORT_REQUEST before the PARAMS end, mid-body or mid-response: the request gets
        its END_REQUEST, and a kept connection serves the next request."""
        conn, keep, rng = self.open(), self.rng.random() < 0.5, self.rng
        point = rng.choice(("params", "body", "response"))
        if point == "params":
            req = self.stream(conn, keep, 1, 1)
            del conn.outbox[-16:]  # the empty PARAMS and STDIN records that end them
        elif point == "body":
            req = self.echo(conn, keep, BODY_SIZES[2:])
            conn.pump(lambda: True)
        else:
            req = self.stream(conn, keep, rng.randint(3, 10), rng.randint(100, 20_000), 10)
            conn.until_output(req)
        conn.abort(req)
        conn.wait(req)
        self.check(conn, req)
        if keep and not conn.eof:
            conn.kept = True
            follow = self.any_request(conn, keep=True)
            conn.wait(follow)
            self.check(conn, follow)

    def vanish(self) -> None:
        """The client closes or resets mid-upload or mid-response."""
        conn, keep, rng = self.open(), self.rng.random() < 0.5, self.rng
        if rng.random() < 0.5:
            self.echo(conn, keep, BODY_SIZES[2:])
            conn.pump(lambda: True)
        else:
            conn.until_output(self.stream(conn, keep, rng.randint(3, 10), 30_000, 5))
        conn.close(reset=rng.random() < 0.5)

    def slow_reader(self) -> None:
        """A 4 KiB receive buffer read in small pieces, with pauses."""
        conn, rng = self.open(rcvbuf=4096), self.rng
        conn.recv_size, conn.read_pause = rng.choice((512, 1024, 4096)), 0.002
        req = self.stream(conn, False, rng.randint(4, 16), rng.randint(1000, 16_000))
        conn.wait(req)
        self.check(conn, req)

    def run(self) -> None:
        episodes = [self.kept, self.multiplexed, self.aborted, self.vanish, self.slow_reader]
        number = 0
        while self.phase.take_episode():
            number += 1
            episode = self.rng.choices(episodes, [3, 3, 3, 2, 1])[0]
            try:
                episode()
            except (AssertionError, Hang, ProtocolError, OSError) as error:
                if isinstance(error, Hang):
                    self.phase.dump_stacks()
                what = f"{episode.__name__} #{number}: {type(error).__name__}: {error}"
                with self.phase.lock:
                    self.phase.failures.append(f"client {self.number}, {what}")
            finally:
                for conn in self.conns:
                    conn.close()
                self.conns.clear()
            self.outcomes[episode.__name__] += 1


# -- the test ----------------------------------------------------------------------------------


def plain_request(address: str) -> tuple[int, bytes]:
    """An echo of b"plain" on a new connection: (status, body)."""
    with closing(Conn(address)) as conn:
        req = conn.begin("/echo?tag=@00000000@", b"", False, 5)
        conn.body(req, b"plain", end=True)
        conn.wait(req)
    status, _, _, body = parse_cgi_response(bytes(req.stdout))
    return status, body


def load(phase: Phase, tmpdir: Path) -> str:
    """The clients' run, with SIGHUPs at seeded points of the way or looks at spill files."""
    clients = [Client(phase, number) for number in range(CLIENT_THREADS)]
    threads = [threading.Thread(target=client.run) for client in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    rng = random.Random(f"{SEED}-{phase.name}-reloads")
    marks = sorted(rng.uniform(0.1, 0.7) for _ in range(RELOADS)) if phase.reloads else []
    spilled = 0
    while any(thread.is_alive() for thread in threads):
        elapsed = time.monotonic() - started
        assert elapsed < LOAD_SECONDS + 4 * READ_TIMEOUT, "a client thread hangs"
        if marks and max(elapsed / LOAD_SECONDS, phase.episodes / MAX_EPISODES) >= marks[0]:
            marks.pop(0)
            phase.server.process.send_signal(signal.SIGHUP)
            phase.server.wait_for_log(f"serving (generation {RELOADS - len(marks)})", 2)
        if not phase.reloads:
            paths = fd_targets(phase.server.process.pid)
            spilled = max(spilled, sum(path.startswith(str(tmpdir)) for path in paths))
        time.sleep(0.05)
    outcomes = sum((client.outcomes for client in clients), Counter())
    return (
        f"{phase.name}: {phase.episodes} episodes in {time.monotonic() - started:.1f} s, "
        f"up to {spilled} spill files at once: {dict(outcomes)}"
    )


def steady_thread_count(pid: int) -> int:
    """The thread count once it has held still for 0.5 s: a pool may still be starting."""
    counts = [thread_count(pid)]
    while len(counts) < 200 and (len(counts) < 10 or len(set(counts[-10:])) > 1):
        time.sleep(0.05)
        counts.append(thread_count(pid))
    return counts[-1]


@pytest.fixture
def reproduce(request: pytest.FixtureRequest) -> str:
    """The command that replays this test's choices, printed (pytest shows it on failure)."""
    command = f"FCGIGW_STRESS_SEED={SEED} pytest '{request.node.nodeid}'"
    print(f"seed {SEED}: {command}")
    return command


@pytest.mark.parametrize("mode", ["single", "reload"])
@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_stress(interface: str, mode: str, tmp_path: Path, reproduce: str) -> None:
    """The load; then no file is left in TMPDIR, (single mode) threads and fds are back to
    their baseline, a plain request is served, and SIGTERM exits 0 in the graceful timeout."""
    try:
        stress(interface, mode, tmp_path)
    except Exception as error:
        raise AssertionError(f"{error}\nseed {SEED}, to reproduce: {reproduce}") from error


def stress(interface: str, mode: str, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    args = ["--request-body-memory-bytes", str(BODY_MEMORY_BYTES)]
    args += ["--graceful-timeout-seconds", str(GRACEFUL_SECONDS)]
    args += ["--workers", "2"] if mode == "reload" else []
    env = child_environment() | {"TMPDIR": str(tmpdir), "PYTHONFAULTHANDLER": "1"}
    with run_fcgigw(*args, f"stressapps:{interface}", env=env) as server:
        pid = server.process.pid
        if mode == "reload":
            server.wait_for_log("serving (generation 0)", 2)
        assert plain_request(server.address) == (200, b"@00000000@\nplain")
        fds, threads = len(fd_targets(pid)), steady_thread_count(pid)
        phase = Phase(f"{interface}-{mode}", server, mode == "reload", time.monotonic())
        phase.deadline += LOAD_SECONDS
        print(load(phase, tmpdir))
        if phase.failures:
            lines = server.log().splitlines()
            log = [line for line in lines if " WARNING " in line or "clos" in line][:10]
            if phase.stacks_dumped:
                log += ["stacks:", *[line for line in lines if _STACK_LINE.match(line)][:300]]
            raise AssertionError("\n".join([*phase.failures[:10], "server log:", *log]))

        def settled() -> bool:
            if os.listdir(tmpdir) or mode == "reload":
                return not os.listdir(tmpdir)
            return len(fd_targets(pid)) - fds <= SLACK_FDS and thread_count(pid) - threads <= 2

        try:
            wait_for(settled, 15)
        except AssertionError:
            now = f"fds {fds} -> {len(fd_targets(pid))}, threads {threads} -> {thread_count(pid)}"
            raise AssertionError(f"files in TMPDIR: {os.listdir(tmpdir)}; {now}") from None
        assert plain_request(server.address) == (200, b"@00000000@\nplain")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(GRACEFUL_SECONDS + 5) == 0, server.log()[-2000:]


# -- what the stress test found: deterministic reproductions -----------------------------------

# Each once broke an invariant the stress test checks: they run for both backends.


@pytest.mark.parametrize(
    "interface",
    ["wsgi", "asgi"],
)
def test_an_abort_read_while_a_response_is_written_gets_its_end_request(interface: str) -> None:
    """§5.4: request 2's BEGIN_REQUEST and ABORT_REQUEST arrive while request 1 writes 8 MiB
    to a client that reads nothing yet, request 1's body still coming. Request 2 gets its
    END_REQUEST before the server closes the connection after request 1 (no KEEP_CONN)."""
    with (
        run_fcgigw(f"stressapps:{interface}") as server,
        closing(Conn(server.address, rcvbuf=4096)) as conn,
    ):
        one = conn.begin("/stream?tag=@00000001@&chunks=8&size=1048576", b"", False, 10)
        conn.body(one, b"hello")
        sent = len(conn.outbox)
        two = conn.begin("/echo?tag=@00000002@", b"", True)
        del conn.outbox[sent + 16 :]  # its BEGIN_REQUEST only
        conn.send_now()
        time.sleep(0.3)  # request 1 is blocked in its write
        conn.abort(two)
        conn.send_now()
        time.sleep(0.2)
        conn.body(one, b"world", end=True)
        conn.wait(one, two)
        assert one.end is not None
        assert two.end is not None, "no END_REQUEST for the aborted request"


@pytest.mark.parametrize(
    "interface",
    ["wsgi", "asgi"],
)
def test_a_stop_serves_a_request_whose_params_are_on_the_way(interface: str) -> None:
    """SIGTERM while request 1 runs and request 2 has sent only its BEGIN_REQUEST on the same
    kept connection; request 2's PARAMS come once request 1 has ended. It is served."""
    with (
        run_fcgigw("--graceful-timeout-seconds", "5", f"stressapps:{interface}") as server,
        closing(Conn(server.address)) as conn,
    ):
        one = conn.begin("/stream?tag=@00000001@&chunks=4&size=10&delay=300", b"", True)
        conn.body(one, b"", end=True)
        conn.until_output(one)
        two = conn.begin("/echo?tag=@00000002@", b"", True)
        conn.body(two, b"", end=True)
        rest = conn.outbox[16:]
        del conn.outbox[16:]
        conn.pump(lambda: True)
        time.sleep(0.2)  # the server has read it
        server.process.send_signal(signal.SIGTERM)
        conn.wait(one)
        time.sleep(0.5)  # request 1 has ended: no app runs now
        conn.outbox += rest
        conn.wait(two)
        assert two.end is not None, "the connection closed under request 2"
        assert parse_cgi_response(bytes(two.stdout))[::3] == (200, b"@00000002@\n")
        assert server.process.wait(GRACEFUL_SECONDS + 5) == 0
