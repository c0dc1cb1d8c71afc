"""fcgigw started by something else, with no --bind: on a listening socket left on fd 0
(FastCGI §2.2: mod_fcgid, lighttpd bin-path, spawn-fcgi, cgi-fcgi -start), as a plain CGI
program (mod_cgi or a shell), and on sockets from systemd (LISTEN_FDS). Each test starts
``python -m fcgigw`` the way that launcher does: the same fds, an environment as bare."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from servers import REPO, RunningProcess, child_environment, fcgigw_command, short_tempdir, stop

from fcgigw.client import FastCGIClient, FastCGIResponse, build_params
from fcgigw.client.cgi import parse_cgi_response

TIMEOUT = 20

#: Apps for these tests, written to a temporary module ``deployapps``.
DEPLOY_APPS = '''
import json
import os


def noisy(environ, start_response):
    """Writes to fds 1 and 2 as a C library or a child process would, and prints."""
    os.write(1, b"stray bytes on fd 1\\n")
    os.write(2, b"stray bytes on fd 2\\n")
    print("a print() from the app")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"intact"]


async def noisy_asgi(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    os.write(1, b"stray bytes on fd 1\\n")
    os.write(2, b"stray bytes on fd 2\\n")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"intact"})


def environment(environ, start_response):
    """The process environment's systemd variables: a child process would inherit them."""
    names = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({name: os.environ.get(name) for name in names}).encode()]
'''


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What mod_fcgid gives a spawned process (web-servers.md §4): PATH and little else.
    PYTHONPATH stands in for a virtualenv; COVERAGE_* keep the coverage hook."""
    apps = tmp_path_factory.mktemp("apps")
    (apps / "deployapps.py").write_text(DEPLOY_APPS)
    environ = {name: value for name, value in os.environ.items() if name.startswith("COVERAGE")}
    environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    environ["PYTHONPATH"] = child_environment()["PYTHONPATH"] + os.pathsep + str(apps)
    return environ


def listening_socket(family: str) -> tuple[socket.socket, str]:
    """A listening socket as a web server creates it, and its address for the client."""
    if family == "unix":
        path = f"{short_tempdir()}/app.sock"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        address = f"unix:{path}"
    else:
        sock = socket.socket(socket.AF_INET)
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    sock.listen()
    return sock, address


def get(address: str, path: str = "/") -> FastCGIResponse:
    with FastCGIClient(address, timeout=TIMEOUT) as client:
        return client.request(build_params("GET", path))


# -- spawned with a listening socket on fd 0 (FastCGI §2.2) --------------------------------


@pytest.mark.parametrize("family", ["unix", "tcp"])
@pytest.mark.parametrize("app", ["deployapps:noisy", "deployapps:noisy_asgi"])
def test_serves_the_listening_socket_on_fd0_with_stdout_and_stderr_closed(
    family: str, app: str, bare_env: dict[str, str]
) -> None:
    """As cgi-fcgi -start starts it (fds 1 and 2 closed; spawn-fcgi -p gives AF_INET): the
    app's writes to fds 1 and 2 go nowhere instead of into a FastCGI connection."""
    listener, address = listening_socket(family)
    process = subprocess.Popen(
        ["/bin/sh", "-c", 'exec "$@" >&- 2>&-', "sh", *fcgigw_command(app)],
        stdin=listener,
        env=bare_env,
        cwd=REPO,
    )
    listener.close()
    try:
        first, second = get(address), get(address)
    finally:
        code = stop(process)
    assert (first.status, first.body) == (200, b"intact")
    assert (second.status, second.body) == (200, b"intact")
    assert code == 0  # SIGTERM, as every launcher sends at shutdown, is a clean stop


def test_explicit_bind_wins_over_fd0(bare_env: dict[str, str]) -> None:
    listener, _ = listening_socket("unix")
    other, other_address = listening_socket("tcp")
    other_fd = other.fileno()
    process = subprocess.Popen(
        fcgigw_command("--bind", f"fd://{other_fd}", "testapps:hello"),
        stdin=listener,
        pass_fds=[other_fd],
        env=bare_env,
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    listener.close()
    other.close()
    try:
        assert get(other_address).body == b"Hello, world!"
    finally:
        assert stop(process) == 0


# -- CGI fallback: the process is the request (RFC 3875) ----------------------------------


def run_cgi(
    app: str,
    environ: dict[str, str],
    method: str = "GET",
    path_info: str = "/",
    stdin: bytes = b"",
    **variables: str,
) -> subprocess.CompletedProcess[bytes]:
    """``python -m fcgigw APP`` with the CGI variables mod_cgi (or a shell) would set."""
    cgi = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "/cgi-bin/app.cgi",
        "PATH_INFO": path_info,
        "QUERY_STRING": "x=1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
    }
    return subprocess.run(
        fcgigw_command(app),
        input=stdin,
        capture_output=True,
        env=environ | cgi | variables,
        cwd=REPO,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("app", ["testapps:echo", "asgiapps:echo"])
def test_cgi_get(app: str, bare_env: dict[str, str]) -> None:
    result = run_cgi(app, bare_env, path_info="/where")
    assert result.returncode == 0, result.stderr
    status, _, headers, body = parse_cgi_response(result.stdout)
    assert status == 200
    assert ("Content-Type", "application/json") in [(n.title(), v) for n, v in headers]
    seen = json.loads(body)
    if app.startswith("testapps"):
        assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/cgi-bin/app.cgi", "/where")
        assert seen["QUERY_STRING"] == "x=1"
        assert seen["wsgi.run_once"] is True  # PEP 3333: this process serves one request
    else:
        assert (seen["root_path"], seen["path"]) == ("/cgi-bin/app.cgi", "/cgi-bin/app.cgi/where")
        assert seen["query_string"] == "x=1"
    assert seen["body_length"] == 0


@pytest.mark.parametrize("app", ["testapps:echo", "asgiapps:echo"])
def test_cgi_post_reads_exactly_content_length_bytes(app: str, bare_env: dict[str, str]) -> None:
    """RFC 3875 §4.2: the body is CONTENT_LENGTH bytes; the server need not close stdin."""
    body = hashlib.sha256(b"seed").digest() * 8192  # 256 KiB, more than a pipe buffer
    result = run_cgi(
        app,
        bare_env,
        "POST",
        "/echo",
        stdin=body + b"bytes past CONTENT_LENGTH",
        CONTENT_LENGTH=str(len(body)),
        CONTENT_TYPE="application/octet-stream",
    )
    assert result.returncode == 0, result.stderr
    status, _, _, response = parse_cgi_response(result.stdout)
    seen = json.loads(response)
    assert status == 200
    assert seen["body_length"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("app", "outcome"),
    [("testapps:body_outcome", b"error"), ("asgiapps:body_outcome", b"disconnected")],
)
def test_cgi_body_cut_short_is_not_taken_for_the_whole(
    app: str, outcome: bytes, bare_env: dict[str, str]
) -> None:
    """stdin ends before CONTENT_LENGTH bytes (the client left mid-upload): WSGI's read
    raises an OSError and ASGI's receive says http.disconnect, as over FastCGI."""
    result = run_cgi(
        app, bare_env, "POST", "/body_outcome", stdin=b"x" * 3000, CONTENT_LENGTH="10000"
    )
    assert b"body x=1: " + outcome in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr


def test_cgi_post_without_content_length_reads_to_the_end(bare_env: dict[str, str]) -> None:
    """mod_cgi streams a chunked request body with no CONTENT_LENGTH, then closes stdin."""
    result = run_cgi("testapps:echo", bare_env, "POST", "/echo", stdin=b"a=1&b=2")
    seen = json.loads(parse_cgi_response(result.stdout)[3])
    assert seen["body_length"] == 7


@pytest.mark.parametrize("app", ["testapps:fail", "asgiapps:fail_before_start"])
def test_cgi_failing_app_is_a_500_with_the_traceback_on_stderr(
    app: str, bare_env: dict[str, str]
) -> None:
    result = run_cgi(app, bare_env)
    status, _, _, body = parse_cgi_response(result.stdout)
    assert status == 500
    assert b"Traceback" not in body
    assert b"Traceback" in result.stderr  # the web server's error log
    assert result.returncode == 0


def test_cgi_app_output_on_fd1_cannot_corrupt_the_response(bare_env: dict[str, str]) -> None:
    result = run_cgi("deployapps:noisy", bare_env)
    assert result.stdout.startswith(b"Status: 200 OK\r\n")
    assert parse_cgi_response(result.stdout)[3] == b"intact"
    assert b"stray bytes on fd 1" in result.stderr
    assert b"a print() from the app" in result.stderr


def test_cgi_asgi_lifespan_is_skipped(bare_env: dict[str, str]) -> None:
    """One request per process: no startup to run before it (ASGI lifespan is optional)."""
    result = run_cgi("asgiapps:with_lifespan", bare_env, path_info="/echo")
    assert result.returncode == 0, result.stderr
    assert json.loads(parse_cgi_response(result.stdout)[3])["state"] is None
    assert b"lifespan startup" not in result.stderr


def test_cgi_variables_with_bind_still_serve_fastcgi(bare_env: dict[str, str]) -> None:
    listener, address = listening_socket("tcp")
    fd = listener.fileno()
    process = subprocess.Popen(
        fcgigw_command("--bind", f"fd://{fd}", "testapps:hello"),
        pass_fds=[fd],
        stdin=subprocess.DEVNULL,
        env=bare_env | {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET"},
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    listener.close()
    try:
        assert get(address).status == 200
    finally:
        assert stop(process) == 0


# -- systemd socket activation (sd_listen_fds(3)) ------------------------------------------

#: Puts the given fds at 3, 4, … and execs the rest of argv, as systemd execs a service;
#: LISTEN_PID is set to the exec'd process's pid (or its parent's, to test a wrong one).
SYSTEMD_WRAPPER = """
import fcntl, os, sys
mode, fds, argv = sys.argv[1], [int(fd) for fd in sys.argv[2].split(",")], sys.argv[3:]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for number, fd in enumerate(high):
    os.dup2(fd, 3 + number)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid() if mode == "right" else os.getppid())
os.execv(sys.executable, [sys.executable, *argv])
"""


def start_under_systemd(
    mode: str, sockets: list[socket.socket], names: str, environ: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    fds = [sock.fileno() for sock in sockets]
    command = ["-m", "fcgigw", "deployapps:environment"]
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-c", SYSTEMD_WRAPPER, mode, ",".join(map(str, fds)), *command],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=environ | {"LISTEN_FDS": str(len(fds)), "LISTEN_FDNAMES": names},
            cwd=REPO,
        )


def test_systemd_sockets_are_adopted_and_the_variables_unset(
    bare_env: dict[str, str], tmp_path: Path
) -> None:
    (tcp, tcp_address), (unix, unix_address) = listening_socket("tcp"), listening_socket("unix")
    process = start_under_systemd("right", [tcp, unix], "web:local", bare_env, tmp_path / "log")
    tcp.close()
    unix.close()
    running = RunningProcess(process, tcp_address, tmp_path / "log")
    try:
        for address in (tcp_address, unix_address):
            response = get(address)
            assert response.status == 200
            # A process the app starts will not adopt the same fds again.
            assert json.loads(response.body) == dict.fromkeys(
                ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
            )
        running.wait_for_log(f"adopted systemd socket web ({tcp_address})")
        running.wait_for_log(f"adopted systemd socket local ({unix_address})")
    finally:
        assert stop(process) == 0


def test_systemd_sockets_for_another_process_are_ignored(
    bare_env: dict[str, str], tmp_path: Path
) -> None:
    """LISTEN_PID names the wrapper's parent: the fds were not meant for fcgigw, which falls
    back to 127.0.0.1:9000. The test holds that port, so the fallback shows as exit 4."""
    holder = socket.socket()
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 9000))
        holder.listen()
    except OSError:
        pass  # someone else holds it: the outcome is the same
    listener, _ = listening_socket("tcp")
    try:
        process = start_under_systemd("wrong", [listener], "web", bare_env, tmp_path / "log")
        listener.close()
        code = process.wait(TIMEOUT)
    finally:
        holder.close()
    log = (tmp_path / "log").read_text()
    assert "LISTEN_FDS ignored: LISTEN_PID=" in log
    assert "adopted" not in log
    assert code == 4
    assert "cannot listen on 127.0.0.1:9000" in log


def test_the_systemd_example_units_are_valid(tmp_path: Path) -> None:
    """examples/systemd as shipped, with ExecStart pointed at a program that exists here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    examples = REPO / "examples" / "systemd"
    shutil.copy(examples / "fcgigw.socket", tmp_path)
    service = (examples / "fcgigw.service").read_text().splitlines()
    (exec_line,) = [n for n, line in enumerate(service) if line.startswith("ExecStart=")]
    service[exec_line] = f"ExecStart={sys.executable} -m fcgigw --access-log testapps:hello"
    (tmp_path / "fcgigw.service").write_text("\n".join(service) + "\n")
    result = subprocess.run(
        [analyze, "verify", "--man=no", "fcgigw.socket", "fcgigw.service"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "fcgigw" in line]
    assert complaints == []
    assert result.returncode == 0
