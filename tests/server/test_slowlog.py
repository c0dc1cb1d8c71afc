"""--slow-request-timeout: a request still running after that long is logged once with the
worker's pid, its method and URI and the stack down to the app's line, and counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from opstools import fcgi_get, status_json, wait_for
from servers import run_fcgigw, run_to_exit, wait_for_text

APP_FUNCTION = {"wsgi": "in wait_in_the_app\n", "asgi": "in wait_in_the_app_async\n"}


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_a_slow_request_is_logged_once_with_its_stack(interface: str, tmp_path: Path) -> None:
    slow_log = tmp_path / "slow.log"
    args = ("--workers", "1", "--slow-request-timeout", "1", "--slow-log", str(slow_log))
    with run_fcgigw(*args, "--status-path", "/status", f"opsapps:{interface}") as server:
        server.wait_for_log("serving (generation 0)")
        response = fcgi_get(server.address, "/slow?seconds=1.8")
        assert response.status == 200
        pid = int(response.body.split()[1])
        wait_for_text(lambda: slow_log.read_text() if slow_log.exists() else "", "slow request")
        text = slow_log.read_text()
        assert f"[{pid}] slow request: worker {pid}, GET /slow?seconds=1.8, running for" in text
        assert "(setting slow_request_timeout)" in text
        assert APP_FUNCTION[interface] in text  # the app's function, and the line it waits on
        assert ("time.sleep(seconds)" if interface == "wsgi" else "asyncio.sleep") in text
        assert text.count("slow request:") == 1  # once, though it ran through several ticks
        wait_for(lambda: status_json(server.address)["slow"] == 1, what="the slow count")
        assert "slow request" not in server.log()  # it went to --slow-log


def test_a_rotated_slow_log_is_written_anew(tmp_path: Path) -> None:
    """logrotate moves the file away: the next slow request goes to a new file at the path
    (php-fpm and gunicorn need a USR1 for that; copytruncate loses lines)."""
    slow_log = tmp_path / "slow.log"
    args = ("--workers", "1", "--slow-request-timeout", "1", "--slow-log", str(slow_log))
    with run_fcgigw(*args, "opsapps:wsgi") as server:
        server.wait_for_log("serving (generation 0)")
        assert fcgi_get(server.address, "/slow?seconds=1.5&first").status == 200
        wait_for_text(lambda: slow_log.read_text() if slow_log.exists() else "", "&first")
        slow_log.rename(tmp_path / "slow.log.1")
        assert fcgi_get(server.address, "/slow?seconds=1.5&second").status == 200
        wait_for_text(lambda: slow_log.read_text() if slow_log.exists() else "", "&second")
    assert "&second" not in (tmp_path / "slow.log.1").read_text()


def test_without_a_slow_log_file_it_goes_to_the_error_log() -> None:
    with run_fcgigw("--slow-request-timeout", "1", "opsapps:wsgi") as server:
        assert fcgi_get(server.address, "/slow?seconds=1.5").status == 200
        server.wait_for_log("fcgigw.slow: slow request: worker")
        assert APP_FUNCTION["wsgi"] in server.log()


def test_a_slow_log_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    result = run_to_exit("--slow-log", str(tmp_path / "missing" / "slow.log"), "opsapps:wsgi")
    assert result.returncode == 2
    assert "fcgigw: slow_log: [Errno 2] No such file or directory" in result.stderr
