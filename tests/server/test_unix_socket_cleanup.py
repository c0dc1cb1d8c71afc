"""A Unix socket file fcgigw created is removed when it stops, on SIGTERM, SIGINT or SIGQUIT, as
php-fpm and gunicorn do; the web server then finds no file instead of a dead socket. A file
fcgigw did not create (a socket on fd 0, from systemd, or fd://N) is left alone, and so is
one another process put in its place since."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from servers import (
    REPO,
    RunningProcess,
    child_environment,
    fcgigw_command,
    run_fcgigw,
    short_tempdir,
    stop,
    wait_until_connectable,
)
from test_deployment_modes import SYSTEMD_WRAPPER

from fcgigw.client import FastCGIClient, build_params

TIMEOUT = 20
STOPS = [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT]


def socket_path() -> str:
    return f"{short_tempdir()}/fcgigw.sock"


def assert_serves(address: str) -> None:
    with FastCGIClient(address, timeout=TIMEOUT) as client:
        assert client.request(build_params("GET", "/")).status == 200


@pytest.mark.parametrize("stop_signal", STOPS, ids=lambda s: s.name)
@pytest.mark.parametrize(
    "server",
    [
        ["testapps:hello"],
        ["--loop", "asyncio", "asgiapps:hello"],
        ["--loop", "uvloop", "asgiapps:hello"],
        ["--workers", "2", "testapps:hello"],
    ],
    ids=["wsgi", "asgi-asyncio", "asgi-uvloop", "workers"],
)
def test_the_socket_file_is_removed_when_fcgigw_stops(
    server: list[str], stop_signal: signal.Signals
) -> None:
    path = socket_path()
    with run_fcgigw(*server, address=f"unix:{path}") as running:
        assert_serves(running.address)
        assert stop(running.process, stop_signal) == 0
    assert not os.path.exists(path)


def test_a_worker_that_stops_leaves_the_file_to_the_supervisor() -> None:
    """Workers share the supervisor's socket: one that exits (SIGTTOU, --max-requests) must
    not take the file from the others."""
    path = socket_path()
    with run_fcgigw("--workers", "2", "testapps:hello", address=f"unix:{path}") as running:
        running.wait_for_log("serving (generation 0)", occurrences=2)
        running.process.send_signal(signal.SIGTTOU)
        running.wait_for_log(" stopped (exit 0)")
        assert os.path.exists(path)
        assert_serves(running.address)
        assert stop(running.process) == 0
    assert not os.path.exists(path)


def test_a_file_put_in_its_place_since_is_left_alone() -> None:
    """Another process replaced the file (a new fcgigw after the old one stopped accepting):
    the old one's exit must not remove the new one's socket."""
    path = socket_path()
    with run_fcgigw("testapps:hello", address=f"unix:{path}") as running:
        os.unlink(path)
        with socket.socket(socket.AF_UNIX) as newer:
            newer.bind(path)
            newer.listen()
            assert stop(running.process) == 0
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)  # the newer socket's file is still there


def listening_unix_socket() -> tuple[socket.socket, str]:
    """A socket file made by someone else: a web server, spawn-fcgi, systemd."""
    path = socket_path()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen()
    return sock, path


def start(
    command: list[str], log: Path, fd: int, env: dict[str, str] | None = None, stdin: object = None
) -> subprocess.Popen[bytes]:
    """``command`` with ``fd`` passed on and its output in ``log``."""
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            command,
            pass_fds=[fd],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,  # type: ignore[arg-type]
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=child_environment() | (env or {}),
            cwd=REPO,
        )


@pytest.mark.parametrize("stop_signal", STOPS, ids=lambda s: s.name)
@pytest.mark.parametrize("handed_over", ["fd0", "fd-bind", "systemd"])
def test_a_socket_fcgigw_was_handed_keeps_its_file(
    handed_over: str, stop_signal: signal.Signals, tmp_path: Path
) -> None:
    listener, path = listening_unix_socket()
    fd, log = listener.fileno(), tmp_path / "log"
    if handed_over == "fd0":  # spawn-fcgi, mod_fcgid, lighttpd bin-path (FastCGI §2.2)
        process = start(fcgigw_command("testapps:hello"), log, fd, stdin=listener)
    elif handed_over == "fd-bind":
        process = start(fcgigw_command("--bind", f"fd://{fd}", "testapps:hello"), log, fd)
    else:  # on fd 3 with LISTEN_FDS=1, as systemd passes it
        command = [sys.executable, "-c", SYSTEMD_WRAPPER, "right", str(fd)]
        command += ["-m", "fcgigw", "testapps:hello"]
        process = start(command, log, fd, env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"})
    listener.close()
    running = RunningProcess(process, f"unix:{path}", log)
    try:
        wait_until_connectable(running.address, process)
        assert_serves(running.address)
    finally:
        code = stop(process, stop_signal)
    assert code == 0, running.log()
    assert os.path.exists(path)
