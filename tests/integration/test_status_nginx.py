"""The status and ping pages through real nginx, with the README's location blocks: every
format, and the figures checked against the load the test made."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from opstools import wait_for
from servers import RunningProcess, nginx_binary, run_fcgigw, run_nginx_config
from test_nginx_flask import http_request

pytestmark = pytest.mark.integration

#: The README's "Operations" locations, in a server that sends the rest to the app.
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path {dir}/body;
    fastcgi_temp_path {dir}/fastcgi;
    proxy_temp_path {dir}/proxy;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {
        listen 127.0.0.1:{port};
        location ~ ^/(status|ping)$ {
            allow 127.0.0.1;
            deny all;
            include /etc/nginx/fastcgi_params;
            fastcgi_pass UPSTREAM;
        }
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass UPSTREAM;
        }
    }
}
"""

LOAD = 24


@pytest.fixture(scope="module")
def pool() -> Iterator[tuple[RunningProcess, RunningProcess]]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    args = ("--workers", "2", "--threads", "2", "--status-path", "/status")
    with run_fcgigw(*args, "--ping-path", "/ping", "opsapps:wsgi") as fcgigw:
        fcgigw.wait_for_log("serving (generation 0)", 2)
        with run_nginx_config(NGINX_CONF.replace("UPSTREAM", fcgigw.address)) as nginx:
            yield nginx, fcgigw


def get(nginx: RunningProcess, path: str) -> tuple[int, str, bytes]:
    status, headers, body = http_request(nginx, "GET", path)
    return status, headers["Content-Type"], body


def status(nginx: RunningProcess) -> dict[str, object]:
    code, content_type, body = get(nginx, "/status?json")
    assert (code, content_type) == (200, "application/json")
    result: dict[str, object] = json.loads(body)
    return result


def test_status_counts_the_load_in_every_format(
    pool: tuple[RunningProcess, RunningProcess],
) -> None:
    nginx, fcgigw = pool
    assert get(nginx, "/ping")[::2] == (200, b"pong\n")
    for _ in range(LOAD):
        assert get(nginx, "/hello")[0] == 200
    # Every request came on its own connection (no keepalive): ping + load + the status
    # reads before the one that sees them all (each worker publishes every 0.25 s).
    reads = 0

    def settled() -> dict[str, object] | None:
        nonlocal reads
        page = status(nginx)
        reads += 1
        return page if page["served"] == 1 + LOAD + reads - 1 else None

    page = wait_for(settled, what="the status page counts the load")
    # One connection per request, plus the start-up probe's and this request's own, which
    # may be published or not yet.
    assert int(page["served"]) <= int(page["accepted"]) <= int(page["served"]) + 2  # type: ignore[call-overload]
    assert (page["total"], page["process_manager"], page["pool"]) == (2, "static", "opsapps:wsgi")
    workers = page["workers"]
    assert isinstance(workers, list)
    # No worker was replaced (its count would be in "served" only): the log says why if one was.
    assert sum(w["requests_served"] for w in workers) == page["served"], (page, fcgigw.log())
    assert all(w["rss_bytes"] > 1024 * 1024 for w in workers)
    [listener] = page["listeners"]  # type: ignore[misc]
    assert listener["address"] == fcgigw.address
    assert listener["limit"] > 0
    assert listener["queued"] == 0
    served = int(page["served"])  # type: ignore[call-overload]

    code, content_type, body = get(nginx, "/status")
    text = dict(line.split(":", 1) for line in body.decode().splitlines() if ":" in line)
    assert (code, content_type) == (200, "text/plain; charset=utf-8")
    assert int(text["requests served"]) in (served, served + 1)
    assert int(text["total processes"]) == 2
    assert text["process manager"].strip() == "static"

    code, content_type, body = get(nginx, "/status?openmetrics")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    metrics = body.decode()
    assert metrics.endswith("# EOF\n")
    samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line[0] != "#")
    assert int(samples["fcgigw_requests_total"]) in (served, served + 1, served + 2)
    assert samples['fcgigw_listen_queue_limit{listener="' + fcgigw.address + '"}'] == str(
        listener["limit"]
    )
    assert len([name for name in samples if name.startswith("fcgigw_worker_requests_total")]) == 2


def test_status_shows_the_request_in_flight(pool: tuple[RunningProcess, RunningProcess]) -> None:
    nginx, _ = pool
    slow = threading.Thread(target=get, args=(nginx, "/slow?seconds=2"))
    slow.start()
    try:

        def busy_worker() -> dict[str, object] | None:
            page = status(nginx)
            workers = page["workers"]
            assert isinstance(workers, list)
            found = [w for w in workers if w["uri"] == "/slow?seconds=2"]
            return page if found and page["busy"] else None

        page = wait_for(busy_worker, what="the slow request on the status page")
        [worker] = [w for w in page["workers"] if w["uri"] == "/slow?seconds=2"]  # type: ignore[attr-defined]
        assert (worker["method"], worker["state"]) == ("GET", "busy")
        assert 0 <= worker["request_age"] < 10
        assert int(page["in_flight"]) >= 1  # type: ignore[call-overload]
        assert int(page["max_busy"]) >= 1  # type: ignore[call-overload]
    finally:
        slow.join(20)


def test_other_paths_reach_the_app(pool: tuple[RunningProcess, RunningProcess]) -> None:
    nginx, _ = pool
    code, _, body = get(nginx, "/status/other")
    assert code == 200
    assert body.startswith(b"status ")  # the app's answer, not the status page


def test_the_openmetrics_page_passes_a_strict_parser(
    pool: tuple[RunningProcess, RunningProcess],
) -> None:
    parser = pytest.importorskip("prometheus_client.openmetrics.parser")
    nginx, _ = pool
    _, _, body = get(nginx, "/status?openmetrics")
    families = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
    assert families["fcgigw_requests"].type == "counter"
    assert families["fcgigw_processes"].type == "gauge"
    pids = {s.labels["pid"] for s in families["fcgigw_worker_requests"].samples}
    assert len(pids) == 2
