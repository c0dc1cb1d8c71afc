"""--status-path and --ping-path without a supervisor, for WSGI and ASGI, over a Unix socket
(its listen queue comes from sock_diag) and TCP; the nginx side is in
tests/integration/test_status_nginx.py."""

from __future__ import annotations

import pytest
from opstools import fcgi_get, status_json, wait_for
from servers import run_fcgigw, short_tempdir

from fcgigw.config import Config


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_a_single_process_reports_itself(interface: str) -> None:
    address = f"unix:{short_tempdir()}/fcgigw.sock"
    args = ("--status-path", "/fcgi-status", "--ping-path", "/fcgi-ping")
    with run_fcgigw(*args, f"opsapps:{interface}", address=address) as server:
        assert fcgi_get(address, "/fcgi-ping").body == b"pong\n"
        for _ in range(5):
            assert fcgi_get(address, "/hello").status == 200
        page = wait_for(
            lambda: (p := status_json(address, "/fcgi-status?json"))["served"] >= 6 and p,
            what="six requests counted",
        )
        assert page["process_manager"] == "single"
        [worker] = page["workers"]
        assert worker["pid"] == server.process.pid
        [listener] = page["listeners"]
        assert listener["address"] == address
        assert listener["limit"] > 0  # sock_diag knows a Unix listener's queue
        assert fcgi_get(address, "/hello?x").body.startswith(b"hello ")


def test_the_pages_are_off_by_default() -> None:
    with run_fcgigw("opsapps:wsgi") as server:
        assert fcgi_get(server.address, "/status").body.startswith(b"status ")
        assert fcgi_get(server.address, "/ping").body.startswith(b"ping ")


def test_bad_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="status_path must start with '/'"):
        Config(status_path="status")
    with pytest.raises(ValueError, match="must differ"):
        Config(status_path="/s", ping_path="/s")
