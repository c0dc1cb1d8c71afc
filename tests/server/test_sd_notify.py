"""systemd's Type=notify (sd_notify.py): fcgigw says READY=1 once it serves, RELOADING=1 and
READY=1 around a reload, STOPPING=1 on a stop, from the process systemd started only.

systemd is played by a Unix datagram socket in NOTIFY_SOCKET that asks the kernel for each
sender's credentials (SO_PASSCRED), as systemd does to enforce NotifyAccess=main.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import (
    POOL_USER_LINE,
    REPO,
    child_environment,
    fcgigw_command,
    free_port,
    run_fcgigw,
    short_tempdir,
    stop,
    wait_until_connectable,
)

from fcgigw.client import FastCGIClient, build_params
from fcgigw.server.sd_notify import Notifier

TIMEOUT = 20


@dataclass
class Message:
    pid: int  # the sender, as the kernel says
    fields: dict[str, str]


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(TIMEOUT)

    def next(self, timeout: float = TIMEOUT) -> Message:
        self.sock.settimeout(timeout)
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        [(level, kind, credentials)] = ancillary
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
        pid, _, _ = struct.unpack("iII", credentials)
        lines = data.decode().splitlines()
        return Message(pid, dict(line.split("=", 1) for line in lines))

    def none_within(self, seconds: float) -> bool:
        try:
            message = self.next(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected notification {message}")


@contextlib.contextmanager
def fake_systemd() -> Iterator[tuple[FakeSystemd, dict[str, str]]]:
    """The socket, and a child environment that names it."""
    path = f"{short_tempdir()}/notify"
    systemd = FakeSystemd(path)
    try:
        yield systemd, {**child_environment(), "NOTIFY_SOCKET": path}
    finally:
        systemd.sock.close()


def app_state(address: str) -> dict[str, str]:
    """poolapps:app's answer (pid, NOTIFY_SOCKET as the app sees it, …)."""
    with FastCGIClient(address, timeout=TIMEOUT) as client:
        response = client.request(build_params("GET", "/"))
    assert response.status == 200, response
    return dict(line.split("=", 1) for line in response.body.decode().splitlines())


# -- the notifier alone ------------------------------------------------------------------------


def test_without_notify_socket_nothing_is_sent() -> None:
    environ = {"PATH": "/bin"}
    notifier = Notifier.from_environment(environ)
    assert notifier.address is None
    notifier.ready("serving")  # no socket, no error


def test_the_variable_is_taken_out_and_the_abstract_namespace_reached() -> None:
    name = f"fcgigw-test-{os.getpid()}"
    systemd = FakeSystemd("\0" + name)
    try:
        environ = {"NOTIFY_SOCKET": "@" + name}
        notifier = Notifier.from_environment(environ)
        assert environ == {}  # the app and the processes it starts never see it
        notifier.ready("serving on unix:/run/app.sock")
        message = systemd.next()
    finally:
        systemd.sock.close()
    assert message == Message(
        os.getpid(), {"READY": "1", "STATUS": "serving on unix:/run/app.sock"}
    )


def test_a_socket_that_is_gone_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "missing"))
    with caplog.at_level(logging.WARNING, "fcgigw.server"):
        notifier.ready("serving")
        notifier.stopping("stopping")
    assert len(caplog.records) == 1
    assert "cannot notify systemd" in caplog.text


# -- one process ---------------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["poolapps:app", "asgiapps:with_lifespan"])
def test_one_process_is_ready_once_it_serves(app: str) -> None:
    """READY=1 comes from the process systemd started, and once it does, a request is
    served (an ASGI app's lifespan has started)."""
    with fake_systemd() as (systemd, environ), run_fcgigw(app, env=environ) as server:
        message = systemd.next()
        assert message.pid == server.process.pid
        assert message.fields == {"READY": "1", "STATUS": f"serving on {server.address}"}
        if app == "poolapps:app":
            assert app_state(server.address)["notify_socket"] == ""
        else:
            assert "lifespan startup" in server.log()
        stop(server.process)
        assert systemd.none_within(0.2)


def test_an_app_that_cannot_import_is_never_ready() -> None:
    """systemd then reports the start failed (the process exits 3) instead of running."""
    with fake_systemd() as (systemd, environ):
        command = fcgigw_command("--bind", f"127.0.0.1:{free_port()}", "no_such_module:app")
        result = subprocess.run(
            command, env=environ, cwd=REPO, capture_output=True, timeout=60, check=False
        )
        assert result.returncode == 3
        assert systemd.none_within(0.2)


# -- a supervisor, a pool master -----------------------------------------------------------------


def test_a_supervisor_is_ready_when_a_worker_serves_and_again_after_a_reload() -> None:
    """Only the supervisor speaks (the workers are other processes, which systemd would
    not hear: NotifyAccess=main); SIGHUP says RELOADING=1 and then READY=1 once a worker
    of the new generation serves; SIGTERM says STOPPING=1."""
    with (
        fake_systemd() as (systemd, environ),
        run_fcgigw("--workers", "2", "poolapps:app", env=environ) as server,
    ):
        main = server.process.pid
        ready = systemd.next()
        assert ready == Message(main, {"READY": "1", "STATUS": "serving: 2 workers, generation 0"})
        assert app_state(server.address)["notify_socket"] == ""
        server.process.send_signal(signal.SIGHUP)
        reloading = systemd.next()
        assert (reloading.pid, reloading.fields["RELOADING"]) == (main, "1")
        assert int(reloading.fields["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
        assert systemd.next() == Message(
            main, {"READY": "1", "STATUS": "serving: 2 workers, generation 1"}
        )
        server.wait_for_log("(generation 1)", occurrences=2)
        server.process.send_signal(signal.SIGTERM)
        assert systemd.next() == Message(main, {"STOPPING": "1", "STATUS": "stopping gracefully"})
        assert server.process.wait(timeout=TIMEOUT) == 0
        assert systemd.none_within(0.2)


def test_an_on_demand_pool_is_ready_with_no_worker() -> None:
    with (
        fake_systemd() as (systemd, environ),
        run_fcgigw("--workers-min", "0", "--workers-max", "2", "poolapps:app", env=environ),
    ):
        assert systemd.next().fields == {"READY": "1", "STATUS": "serving: 0 workers, generation 0"}


def pools_file(apps: dict[str, str]) -> tuple[Path, str, dict[str, str]]:
    """A file of pools, pool name -> app (b with two workers, the others one process):
    its path, its text and the pools' addresses."""
    workdir = Path(short_tempdir())
    addresses = {name: f"127.0.0.1:{free_port()}" for name in apps}
    text = f"{POOL_USER_LINE}threads = 2\n"
    for name, app in apps.items():
        workers = 2 if name == "b" else 0
        text += f'\n[pool.{name}]\napp = "{app}"\nbind = "{addresses[name]}"\nworkers = {workers}\n'
    config = workdir / "pools.toml"
    config.write_text(text)
    return config, text, addresses


@contextlib.contextmanager
def pool_master(config: Path, environ: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with open(config.parent / "log", "wb") as log:
        process = subprocess.Popen(
            fcgigw_command("--config", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=REPO,
        )
    try:
        yield process
    finally:
        stop(process)


def test_a_pool_master_is_ready_once_every_pool_serves_and_after_sighup() -> None:
    config, text, addresses = pools_file({"a": "poolapps:app", "b": "poolapps:app"})
    with fake_systemd() as (systemd, environ), pool_master(config, environ) as process:
        ready = systemd.next()
        assert ready == Message(process.pid, {"READY": "1", "STATUS": "serving: a, b"})
        for address in addresses.values():
            wait_until_connectable(address, process)
            assert app_state(address)["notify_socket"] == ""
        config.write_text(text.replace("threads = 2", "threads = 3"))  # both change
        process.send_signal(signal.SIGHUP)
        assert systemd.next().fields["RELOADING"] == "1"
        assert systemd.next() == Message(process.pid, {"READY": "1", "STATUS": "serving: a, b"})
        process.send_signal(signal.SIGTERM)
        assert systemd.next().fields == {"STOPPING": "1", "STATUS": "stopping every pool"}
        assert process.wait(timeout=TIMEOUT) == 0


def test_a_pool_master_is_ready_with_the_pools_that_can_start() -> None:
    """A pool whose app cannot import does not hold the others' start up; a master none of
    whose pools can start is never ready (it exits, and systemd says the start failed)."""
    config, _, _ = pools_file({"a": "no_such_module:app", "b": "poolapps:app"})
    with fake_systemd() as (systemd, environ), pool_master(config, environ) as process:
        assert systemd.next().fields == {"READY": "1", "STATUS": "serving: b"}
    config, _, _ = pools_file({"a": "no_such_module:app"})
    with fake_systemd() as (systemd, environ), pool_master(config, environ) as process:
        assert process.wait(timeout=TIMEOUT) != 0
        assert systemd.next().fields == {"STOPPING": "1", "STATUS": "stopping every pool"}
        assert systemd.none_within(0.2)
