"""An on-demand pool behind real nginx: no worker until the first request, one for it, and
none again once it has been idle for --worker-idle-timeout."""

from __future__ import annotations

import pytest
from opstools import children, wait_for
from servers import nginx_binary, run_fcgigw, run_nginx
from test_nginx_flask import http_request

pytestmark = pytest.mark.integration


def test_an_on_demand_pool_starts_at_zero_serves_and_goes_back_to_zero() -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    args = ("--workers-min", "0", "--workers-max", "2", "--worker-idle-timeout", "1")
    with run_fcgigw(*args, "opsapps:wsgi") as fcgigw, run_nginx(fcgigw.address) as nginx:
        fcgigw.wait_for_log("starting 0 workers (ondemand)")
        # run_fcgigw's probe connection was a connection too: its worker goes idle first.
        wait_for(lambda: not children(fcgigw), what="zero workers")
        starts = fcgigw.log().count("a connection is waiting: starting a worker")
        status, _, body = http_request(nginx, "GET", "/hello")
        assert status == 200
        first = int(body.split()[1])
        assert children(fcgigw) == {first}
        fcgigw.wait_for_log("a connection is waiting: starting a worker", starts + 1)
        wait_for(lambda: not children(fcgigw), what="back to zero workers")
        fcgigw.wait_for_log(f"worker {first} idle for")
        status, _, body = http_request(nginx, "GET", "/hello")  # and again from zero
        assert status == 200
        assert int(body.split()[1]) != first
