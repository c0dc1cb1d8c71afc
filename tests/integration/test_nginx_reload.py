"""Zero-downtime reload behind real nginx: SIGHUP to the supervisor while clients keep
requesting, with and without fastcgi_keep_conn. Every request must succeed."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest
from servers import RunningProcess, nginx_binary, run_fcgigw, run_nginx
from test_nginx_flask import http_request

pytestmark = pytest.mark.integration

RELOADS = 3
CLIENTS = 4


@pytest.fixture(params=[False, True], ids=["no-keepalive", "keep-conn"])
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[RunningProcess, RunningProcess]]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    with run_fcgigw("--workers", "2", "testapps:router") as fcgigw:
        fcgigw.wait_for_log("serving (generation 0)", 2)
        with run_nginx(fcgigw.address, keepalive=request.param) as nginx:
            yield nginx, fcgigw


def test_reload_under_load_fails_no_request(stack: tuple[RunningProcess, RunningProcess]) -> None:
    nginx, fcgigw = stack
    outcomes: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, _, body = http_request(nginx, "GET", "/hello")
                outcomes.append(status if body == b"Hello, world!" else -1)
                if outcomes[-1] != 200:
                    failures.append(f"{status} {body[:200]!r}")
            except OSError as error:
                outcomes.append(-2)
                failures.append(repr(error))

    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    for generation in range(1, RELOADS + 1):
        time.sleep(0.3)
        fcgigw.process.send_signal(signal.SIGHUP)
        fcgigw.wait_for_log(f"serving (generation {generation})", 2)
    time.sleep(0.3)
    stop.set()
    for thread in clients:
        thread.join(20)
    failed = [outcome for outcome in outcomes if outcome != 200]
    print(f"reload behind nginx: {len(outcomes)} requests, {len(failed)} failed")
    assert len(outcomes) > 100
    assert failed == [], (failures, nginx.log(), fcgigw.log()[-3000:])
