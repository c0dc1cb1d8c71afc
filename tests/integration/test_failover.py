"""Scale-out and failover: two fcgigw processes on two addresses behind one nginx upstream.

Each fcgigw listens on its own loopback address (127.0.0.2, 127.0.0.3: Linux routes all of
127/8 to lo, so they stand in for two machines) and takes connections only from the web
server's address (--allow-from 127.0.0.1; nginx connects from it with fastcgi_bind). nginx
balances between them and, with ``fastcgi_next_upstream error timeout``, passes a request
whose backend failed to the other one. One fcgigw is killed with SIGKILL under steady load
from four clients: no client request fails.

Why zero is the real bound here: nginx retries a request on the next server only while it
has passed nothing of the response to its client. A backend killed while it runs a request,
or before it accepts one, fails nothing: the connection is refused or closed before any
response byte, and nginx retries. A backend killed half-way through writing a response that
nginx already started to relay would cut that one response (no retry is possible then); the
responses here are written in one piece, so that case cannot arise. GET is retried; nginx
retries POST and other non-idempotent requests only with ``fastcgi_next_upstream
non_idempotent``, which is safe only when the app makes them idempotent.
"""

from __future__ import annotations

import http.client
import signal
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from servers import RunningProcess, free_port, nginx_binary, nginx_upstream, run_fcgigw, run_nginx

pytestmark = pytest.mark.integration

CLIENTS = 4
#: Requests each backend serves before the kill, and the survivor after it.
BEFORE_KILL = AFTER_KILL = 150
BACKENDS = ("127.0.0.2", "127.0.0.3")
NGINX_FAILOVER = """
fastcgi_bind 127.0.0.1;
fastcgi_next_upstream error timeout;
fastcgi_connect_timeout 2s;
"""


@pytest.fixture(params=[False, True], ids=["no-keepalive", "keep-conn"])
def stack(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[RunningProcess, list[RunningProcess]]]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    with (
        run_fcgigw(
            "--access-log",
            "--allow-from",
            "127.0.0.1",
            "testapps:router",
            address=f"{BACKENDS[0]}:{free_port()}",
        ) as first,
        run_fcgigw(
            "--access-log",
            "--allow-from",
            "127.0.0.1",
            "testapps:router",
            address=f"{BACKENDS[1]}:{free_port()}",
        ) as second,
    ):
        upstream = nginx_upstream(first.address, second.address, options="max_fails=1")
        with run_nginx(upstream, keepalive=request.param, extra=NGINX_FAILOVER) as nginx:
            yield nginx, [first, second]


def served(backend: RunningProcess) -> int:
    """Requests a backend has answered, from its access log."""
    return backend.log().count('"GET /')


def test_killing_one_of_two_backends_under_load_fails_no_request(
    stack: tuple[RunningProcess, list[RunningProcess]],
) -> None:
    nginx, (victim, survivor) = stack
    host, _, port = nginx.address.rpartition(":")
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(number: int) -> None:
        # A slow request now and then, so that some are inside the app at the kill.
        paths = ("/hello", "/slow?seconds=0.02") if number % 2 else ("/hello",)
        sent = 0
        while not stop.is_set():
            path = paths[sent % len(paths)]
            sent += 1
            connection = http.client.HTTPConnection(host, int(port), timeout=20)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                outcome = "ok" if response.status == 200 and response.read() else "failed"
                if outcome == "failed":
                    outcome = f"HTTP {response.status}"
            except OSError as error:
                outcome = type(error).__name__
            finally:
                connection.close()
            with lock:
                outcomes[outcome] += 1

    clients = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        victim.wait_for_log('"GET /', BEFORE_KILL)
        survivor.wait_for_log('"GET /', BEFORE_KILL)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(20)
        after = served(survivor)
        survivor.wait_for_log('"GET /', after + AFTER_KILL)
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
    failed = {outcome: count for outcome, count in outcomes.items() if outcome != "ok"}
    # Requests nginx sent to the dead backend (refused, or reset or closed while inside the
    # app) and then passed on to the survivor.
    retried = [
        line
        for line in nginx.log().splitlines()
        if "[error]" in line and f'upstream: "fastcgi://{victim.address}' in line
    ]
    print(
        f"failover: {sum(outcomes.values())} requests, {sum(failed.values())} failed {failed}; "
        f"served {served(victim)} by the killed backend, {served(survivor)} by the survivor; "
        f"{len(retried)} passed on by nginx"
    )
    assert failed == {}
    assert retried
    assert outcomes["ok"] >= 2 * BEFORE_KILL + AFTER_KILL
