"""The process manager: a dynamic pool grows when every worker is busy and shrinks back after
--worker-idle-timeout; an on-demand pool (--workers-min 0) starts with no worker, starts one
for the first connection, and goes back to zero (through nginx in
tests/integration/test_ondemand_nginx.py)."""

from __future__ import annotations

import threading

import pytest
from opstools import children, fcgi_get, status_json, wait_for
from servers import run_fcgigw

from fcgigw.config import Config


def test_a_dynamic_pool_grows_under_load_and_shrinks_when_idle() -> None:
    args = ("--workers-min", "1", "--workers-max", "3", "--worker-idle-timeout", "1")
    with run_fcgigw(*args, "--threads", "1", "--status-path", "/status", "opsapps:wsgi") as server:
        server.wait_for_log("starting 1 workers (dynamic)")
        server.wait_for_log("serving (generation 0)")
        assert len(children(server)) == 1
        bodies: list[bytes] = []
        clients = [
            threading.Thread(
                target=lambda: bodies.append(fcgi_get(server.address, "/slow?seconds=5").body)
            )
            for _ in range(3)
        ]
        # Long enough for the second worker to start and take a request from the backlog
        # while the first is busy, even on a loaded CI machine (3 s was not, once).
        for client in clients:
            client.start()
        server.wait_for_log("all 1 workers are busy: starting another")
        wait_for(lambda: len(children(server)) >= 2, what="a second worker")
        for client in clients:
            client.join(30)
        assert len(bodies) == 3
        assert len({body.split()[1] for body in bodies}) >= 2  # served by more than one worker
        wait_for(lambda: len(children(server)) == 1, what="back to the minimum")
        server.wait_for_log("idle for")
        page = status_json(server.address)
        assert page["process_manager"] == "dynamic"
        assert page["max_busy"] >= 2


def test_pool_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="workers_min needs workers_max"):
        Config(workers_min=0)
    with pytest.raises(ValueError, match="workers_min must not be above workers_max"):
        Config(workers_min=3, workers_max=2)
    with pytest.raises(ValueError, match=r"within workers_min\.\.max"):
        Config(workers=5, workers_min=1, workers_max=4)
    assert Config(workers_min=0, workers_max=4).supervised
