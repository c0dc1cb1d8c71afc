"""--workers N under the supervisor: workers share the listeners, dead ones are replaced, SIGHUP
reloads new code with no failed request, max-requests recycles, and stops are clean."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import (
    RunningProcess,
    child_environment,
    free_port,
    run_fcgigw,
    run_to_exit,
)

from fcgigw.client import FastCGIClient, build_params

TIMEOUT = 20

VERSIONED_APP = """
import os, time

VERSION = {version!r}

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(environ["QUERY_STRING"] or 1))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{{VERSION}} {{os.getpid()}}".encode()]
"""


def write_app(directory: Path, version: str) -> None:
    """(Re)write versioned.py; the mtime bump makes the next import read it again."""
    path = directory / "versioned.py"
    path.write_text(VERSIONED_APP.format(version=version))
    stamp = time.time() + 2
    os.utime(path, (stamp, stamp))


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path, "v1")
    return tmp_path


def environment(app_dir: Path) -> dict[str, str]:
    env = child_environment()
    env["PYTHONPATH"] = f"{app_dir}{os.pathsep}{env['PYTHONPATH']}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # every worker compiles what is on disk now
    return env


@pytest.fixture
def supervised(app_dir: Path) -> Iterator[RunningProcess]:
    with run_fcgigw(
        "--workers", "2", "--threads", "1", "versioned:app", env=environment(app_dir)
    ) as server:
        server.wait_for_log("serving (generation 0)", 2)  # both imported the app and listen
        yield server


def get(server: RunningProcess, path: str = "/") -> tuple[str, int]:
    """(version, worker pid) of one request on a new connection."""
    with FastCGIClient(server.address, timeout=TIMEOUT) as client:
        response = client.request(build_params("GET", path))
    assert response.status == 200, response
    version, pid = response.body.decode().split()
    return version, int(pid)


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) from /proc, or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state[0] != "Z"


def worker_pids(server: RunningProcess) -> set[int]:
    """The live child processes of the supervisor."""
    return {
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and (state := process_state(int(entry))) is not None
        and state[1] == server.process.pid
        and state[0] != "Z"
    }


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_workers_share_the_listener(supervised: RunningProcess) -> None:
    """While one worker (one thread) is inside a slow request, the other takes the next."""
    results: list[tuple[str, int]] = []
    thread = threading.Thread(target=lambda: results.append(get(supervised, "/slow?1")))
    thread.start()
    time.sleep(0.3)  # the first request is inside the app now
    results.append(get(supervised))
    thread.join(TIMEOUT)
    assert {pid for _, pid in results} == worker_pids(supervised)


def test_a_request_on_a_connection_accepted_before_a_long_one_is_not_held_behind_it(
    app_dir: Path,
) -> None:
    """A worker (one thread) accepts a connection whose request is still on its way, then
    could accept the next, a long one: it must serve the first when it comes, not park it
    and leave it waiting in this worker for as long as the long request runs."""
    with run_fcgigw(
        "--workers", "1", "--threads", "1", "versioned:app", env=environment(app_dir)
    ) as server:
        server.wait_for_log("serving (generation 0)")
        finished: list[str] = []
        with FastCGIClient(server.address, timeout=TIMEOUT) as first:
            assert first.sock  # connected: in the backlog, its request not sent yet
            time.sleep(0.2)  # the worker has accepted it

            def long_request() -> None:
                get(server, "/slow?3")
                finished.append("long")

            thread = threading.Thread(target=long_request)
            thread.start()
            time.sleep(0.2)  # the long request is in the backlog too
            assert first.request(build_params("GET", "/")).status == 200
            finished.append("first")
            thread.join(TIMEOUT)
        assert finished == ["first", "long"]


def test_a_dead_worker_is_replaced(supervised: RunningProcess) -> None:
    victim = min(worker_pids(supervised))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in worker_pids(supervised) and len(worker_pids(supervised)) == 2)
    supervised.wait_for_log(f"worker {victim} died (exit -9); replacing it")
    assert get(supervised)[0] == "v1"


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT, signal.SIGTTIN])
def test_a_worker_ignores_the_supervisors_signals(
    supervised: RunningProcess, signum: signal.Signals
) -> None:
    """Sent to a worker directly (a process group, a wrong pid), they change nothing: the
    worker serves on, and only the supervisor reloads, stops or resizes."""
    workers = worker_pids(supervised)
    for pid in workers:
        os.kill(pid, signum)
    time.sleep(0.3)
    assert worker_pids(supervised) == workers
    assert all(process_state(pid)[0] != "T" for pid in workers)  # type: ignore[index]
    assert get(supervised)[0] == "v1"


def test_sighup_reloads_new_code_without_failing_a_request(
    supervised: RunningProcess, app_dir: Path
) -> None:
    """A steady stream of requests from four clients while the code changes and the workers
    are reloaded three times: every request succeeds."""
    counts = {"ok": 0, "failed": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            try:
                get(supervised)
                outcome = "ok"
            except (OSError, AssertionError, ValueError):
                outcome = "failed"
            with lock:
                counts[outcome] += 1

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    old_pids = worker_pids(supervised)
    for version in ("v2", "v3", "v4"):
        write_app(app_dir, version)
        supervised.process.send_signal(signal.SIGHUP)
        wait_for(lambda v=version: get(supervised)[0] == v)  # type: ignore[misc]
        wait_for(lambda: len(worker_pids(supervised)) == 2)  # the old generation has gone
    time.sleep(0.2)
    stop.set()
    for thread in clients:
        thread.join(TIMEOUT)
    print(f"reload under load: {counts['ok']} requests, {counts['failed']} failed")
    assert counts["failed"] == 0
    assert counts["ok"] > 100
    assert not worker_pids(supervised) & old_pids
    assert get(supervised)[0] == "v4"


def test_a_reload_whose_code_is_broken_keeps_the_running_workers(
    supervised: RunningProcess, app_dir: Path
) -> None:
    (app_dir / "versioned.py").write_text("raise ImportError('broken deploy')\n")
    before = worker_pids(supervised)
    supervised.process.send_signal(signal.SIGHUP)
    supervised.wait_for_log("reload failed (exit 3): keeping the running workers")
    assert get(supervised)[0] == "v1"
    assert worker_pids(supervised) == before
    write_app(app_dir, "v2")  # fixed: the next reload goes through
    supervised.process.send_signal(signal.SIGHUP)
    wait_for(lambda: get(supervised)[0] == "v2")


def test_ttin_and_ttou_change_the_number_of_workers(supervised: RunningProcess) -> None:
    supervised.process.send_signal(signal.SIGTTIN)
    wait_for(lambda: len(worker_pids(supervised)) == 3)
    supervised.process.send_signal(signal.SIGTTOU)  # one at a time: signals do not queue
    wait_for(lambda: len(worker_pids(supervised)) == 2)
    supervised.process.send_signal(signal.SIGTTOU)
    wait_for(lambda: len(worker_pids(supervised)) == 1)
    supervised.process.send_signal(signal.SIGTTOU)  # never below one
    time.sleep(0.3)
    assert len(worker_pids(supervised)) == 1
    assert get(supervised)[0] == "v1"


def test_sigterm_lets_in_flight_requests_finish(supervised: RunningProcess) -> None:
    result: list[tuple[str, int]] = []
    thread = threading.Thread(target=lambda: result.append(get(supervised, "/slow?1")))
    thread.start()
    time.sleep(0.3)  # the request is inside the app (it sleeps for 1 s)
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.process.wait(TIMEOUT) == 0
    thread.join(TIMEOUT)
    assert [version for version, _ in result] == ["v1"]


def test_max_requests_recycles_workers(app_dir: Path) -> None:
    with run_fcgigw(
        "--workers", "1", "--max-requests", "3", "versioned:app", env=environment(app_dir)
    ) as server:
        pids: list[int] = []
        while len(set(pids)) < 3:  # until two workers were replaced
            assert len(pids) < 100, "workers were not recycled"
            pids.append(get(server)[1])  # never a failure while workers change
        server.wait_for_log("served max_requests: stopping to be replaced", 2)
    assert pids[:3] == [pids[0]] * 3  # a worker serves at least its budget


def test_max_requests_without_workers_exits_the_process(app_dir: Path) -> None:
    """mod_fcgid and lighttpd restart a spawned app that exits (FcgidMaxRequestsPerProcess)."""
    with run_fcgigw("--max-requests", "2", "versioned:app", env=environment(app_dir)) as server:
        get(server)
        get(server)
        assert server.process.wait(TIMEOUT) == 0


def test_an_app_that_cannot_be_imported_stops_the_supervisor() -> None:
    result = run_to_exit("--bind", f"127.0.0.1:{free_port()}", "--workers", "3", "nosuch:app")
    assert result.returncode == 3  # the app-load exit code, not a respawn loop
    assert "the application cannot start (exit 3); stopping" in result.stderr
    assert result.stderr.count("replacing it") == 0


def test_pid_file_and_orphaned_workers(app_dir: Path, tmp_path: Path) -> None:
    pid_path = tmp_path / "fcgigw.pid"
    with run_fcgigw(
        "--workers", "2", "--pid-file", str(pid_path), "versioned:app", env=environment(app_dir)
    ) as server:
        wait_for(lambda: len(worker_pids(server)) == 2)
        assert pid_path.read_text() == f"{server.process.pid}\n"
        workers = worker_pids(server)
        server.process.kill()  # the supervisor dies without stopping its workers
        server.process.wait(TIMEOUT)
        wait_for(lambda: not any(alive(pid) for pid in workers))


def test_pid_file_is_removed_on_exit(app_dir: Path, tmp_path: Path) -> None:
    pid_path = tmp_path / "fcgigw.pid"
    with run_fcgigw("--pid-file", str(pid_path), "versioned:app", env=environment(app_dir)) as s:
        # Written just after the sockets listen (a second instance that cannot bind must not
        # clobber the first one's file), so it may come a moment after the socket accepts.
        wait_for(pid_path.exists, 5)
        assert pid_path.read_text() == f"{s.process.pid}\n"
        s.process.send_signal(signal.SIGTERM)
        assert s.process.wait(TIMEOUT) == 0
    assert not pid_path.exists()
