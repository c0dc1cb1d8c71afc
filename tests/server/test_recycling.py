"""Stuck and fat workers are replaced: a request that never ends gets its 504, its worker is
replaced (the replacement first, so the pool never runs short), and a parallel load loses no
request; a worker past --max-worker-memory is replaced the same way."""

from __future__ import annotations

import re
import threading

import pytest
from opstools import children, fcgi_get, status_json, wait_for
from servers import RunningProcess, run_fcgigw


class Load:
    """Three clients sending /hello on new connections until stopped; counts outcomes."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(3)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = fcgi_get(self.address, "/hello", timeout=10)
                outcome = "" if response.status == 200 else f"status {response.status}"
            except (OSError, ValueError) as error:
                outcome = repr(error)
            if outcome:
                self.failed.append(outcome)
            else:
                self.ok += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)


def replaced_pid(server: RunningProcess, reason: str) -> int:
    server.wait_for_log(f"({reason}): ")
    found = re.search(rf"replacing worker (\d+) \({reason}\)", server.log())
    assert found, server.log()
    return int(found.group(1))


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_a_stuck_worker_is_replaced_and_no_request_is_lost(interface: str) -> None:
    args = ("--workers", "2", "--threads", "2", "--request-timeout-seconds", "1")
    args += ("--graceful-timeout-seconds", "2", "--status-path", "/status")
    with run_fcgigw(*args, f"opsapps:{interface}") as server:
        server.wait_for_log("serving (generation 0)", 2)
        before = children(server)
        with Load(server.address) as load:
            assert fcgi_get(server.address, "/block").status == 504
            stuck = replaced_pid(server, "stuck")
            assert stuck in before
            server.wait_for_log(f"worker {stuck} stopped")
            wait_for(lambda: load.ok > 20, what="load after the replacement")
        assert load.failed == []
        after = children(server)
        assert len(after) == 2
        assert stuck not in after
        log = server.log()
        # The replacement served before the stuck worker was told to stop.
        replacement = (after - before).pop()
        assert log.index(f"worker {replacement} serving") < log.index(f"stopping worker {stuck}")
        page = status_json(server.address)
        assert page["recycled_stuck"] == 1
        assert page["total"] == 2


def test_a_worker_whose_event_loop_is_blocked_is_replaced() -> None:
    """It cannot even ask: its clock stops publishing, the supervisor sees the silence."""
    args = ("--workers", "1", "--request-timeout-seconds", "1", "--graceful-timeout-seconds", "1")
    with run_fcgigw(*args, "opsapps:asgi") as server:
        server.wait_for_log("serving (generation 0)")
        frozen = int(fcgi_get(server.address, "/hello").body.split()[1])
        with pytest.raises(OSError):
            fcgi_get(server.address, "/freeze", timeout=1)
        assert replaced_pid(server, "stuck") == frozen
        server.wait_for_log("has not ticked for")
        server.wait_for_log(f"worker {frozen} did not stop in time: killing it")
        assert int(fcgi_get(server.address, "/hello").body.split()[1]) != frozen


def test_a_worker_past_max_worker_memory_is_replaced() -> None:
    args = ("--workers", "1", "--max-worker-memory", "80", "--status-path", "/status")
    with run_fcgigw(*args, "opsapps:wsgi") as server:
        server.wait_for_log("serving (generation 0)")
        first = int(fcgi_get(server.address, "/allocate?mib=100").body.split()[1])
        assert replaced_pid(server, "memory") == first
        server.wait_for_log("(setting max_worker_memory 80)")
        server.wait_for_log(f"worker {first} stopped")
        second = int(fcgi_get(server.address, "/hello").body.split()[1])
        assert second != first
        assert status_json(server.address)["recycled_memory"] == 1
