"""Fixtures that start fcgigw and real nginx on loopback (see tests/servers.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers import RunningProcess, nginx_binary, run_fcgigw, run_nginx, short_tempdir


@pytest.fixture(scope="module", params=["tcp", "unix"])
def flask_fcgigw(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    """The Flask example under fcgigw, over TCP and over a Unix socket."""
    address = f"unix:{short_tempdir()}/fcgigw.sock" if request.param == "unix" else None
    with run_fcgigw("--access-log", "examples.flask_app:app", address=address) as server:
        yield server


@pytest.fixture(scope="module", params=[False, True], ids=["no-keepalive", "keep-conn"])
def nginx_flask(
    request: pytest.FixtureRequest, flask_fcgigw: RunningProcess
) -> Iterator[tuple[RunningProcess, RunningProcess]]:
    """nginx with stock fastcgi_params in front of the Flask example; with and without
    fastcgi_keep_conn + upstream keepalive."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    with run_nginx(flask_fcgigw.address, keepalive=request.param) as nginx:
        yield nginx, flask_fcgigw
