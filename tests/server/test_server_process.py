"""fcgigw as a process: start-up errors, settings from flags and FCGIGW_*, signals, access
control, Unix socket files."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import threading
import traceback
from pathlib import Path

import pytest
from servers import (
    REPO,
    child_environment,
    fcgigw_command,
    free_port,
    run_fcgigw,
    run_to_exit,
    short_tempdir,
)

from fcgigw.client import FastCGIClient, build_params
from fcgigw.protocol import ConnectionClosed, EndRequest, ProtocolStatus, RecordType, Role

TIMEOUT = 20


def hello(address: str) -> int:
    with FastCGIClient(address, timeout=TIMEOUT) as client:
        return client.request(build_params("GET", "/hello")).status


def test_an_app_that_cannot_be_imported_is_a_one_line_error() -> None:
    result = run_to_exit("--bind", f"127.0.0.1:{free_port()}", "no_such_module:app")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "fcgigw: cannot import module 'no_such_module': No module named 'no_such_module'"
    ]


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (
            "import no_such_dependency\napp = None\n",
            "ModuleNotFoundError: No module named 'no_such_dependency'",
        ),
        ("SETTINGS['x']\n", "NameError: name 'SETTINGS' is not defined"),
        ("import ast\nast.parse('x(')\n", "SyntaxError: '(' was never closed"),  # at run time
    ],
)
def test_an_app_whose_own_code_fails_to_import_shows_its_traceback(
    tmp_path: Path, source: str, shown: str
) -> None:
    (tmp_path / "brokenapp.py").write_text(source)
    env = child_environment()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    result = run_to_exit("--bind", f"127.0.0.1:{free_port()}", "brokenapp:app", env=env)
    assert result.returncode == 3  # a supervisor (ours, systemd, mod_fcgid) must not loop
    assert "Traceback (most recent call last)" in result.stderr
    assert 'brokenapp.py", line' in result.stderr
    assert shown in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"fcgigw: importing 'brokenapp' failed: {shown}"
    assert "Error(" not in result.stderr  # the error's own line, not its repr


@pytest.mark.parametrize(
    "source",
    ["def app(environ, start_response)\n    return []\n", "app = None\n  oops = 1\n"],
)
def test_a_syntax_error_in_the_app_shows_where_once_without_a_traceback(
    tmp_path: Path, source: str
) -> None:
    """All of stderr is one line from fcgigw and Python's own report of the module that does
    not compile (file, line, the line with a caret, the message): no traceback, no repr."""
    path = tmp_path / "brokenapp.py"
    path.write_text(source)
    with pytest.raises(SyntaxError) as compiled:
        compile(source, str(path), "exec")
    report = "".join(traceback.format_exception_only(compiled.value))
    assert f'File "{path}", line' in report
    env = child_environment()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    result = run_to_exit("--bind", f"127.0.0.1:{free_port()}", "brokenapp:app", env=env)
    assert result.returncode == 3
    assert result.stderr == "fcgigw: importing 'brokenapp' failed:\n" + report


def test_a_missing_attribute_is_a_one_line_error() -> None:
    result = run_to_exit("--bind", f"127.0.0.1:{free_port()}", "testapps:nope")
    assert result.returncode == 3
    assert "has no attribute 'nope'" in result.stderr


def test_an_address_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit("--bind", f"127.0.0.1:{port}", "testapps:hello")
    assert result.returncode == 4
    assert result.stderr.startswith(f"fcgigw: cannot listen on 127.0.0.1:{port}:")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [["--bind", "nowhere"], ["--threads", "0"], ["--roles", "responder,judge"]],
)
def test_bad_settings_exit_with_a_clear_message(args: list[str]) -> None:
    result = run_to_exit(*args, "testapps:hello")
    assert result.returncode == 2
    assert result.stderr.startswith("fcgigw: ")


@pytest.mark.parametrize(
    ("args", "variables", "message"),
    [
        (["--threads", "abc"], {}, "--threads wants a whole number, got 'abc'"),
        (
            [],
            {"FCGIGW_THREADS": "8 threads"},
            "FCGIGW_THREADS wants a whole number, got '8 threads'",
        ),
        (["--max-params-bytes", "1e6"], {}, "--max-params-bytes wants a whole number, got '1e6'"),
        (
            ["--socket-mode", "0999"],
            {},
            "--socket-mode wants an octal mode such as 660, got '0999'",
        ),
        (
            [],
            {"FCGIGW_ACCESS_LOG": "maybe"},
            "FCGIGW_ACCESS_LOG wants a boolean (true or false), got 'maybe'",
        ),
        (
            ["--roles", "responder,judge"],
            {},
            "--roles wants one or more of responder,authorizer,filter, got 'responder,judge'",
        ),
    ],
)
def test_a_bad_option_value_says_which_option_wants_what(
    args: list[str], variables: dict[str, str], message: str
) -> None:
    """The option (or variable) as the user wrote it, what it takes, and what it got; not
    int()'s "invalid literal for int() with base 10"."""
    result = run_to_exit(*args, "testapps:hello", env=child_environment() | variables)
    assert result.returncode == 2
    assert result.stderr == f"fcgigw: {message}\n"


@pytest.mark.parametrize(
    ("args", "variables"), [(["--bind", "localhost"], {}), ([], {"FCGIGW_BIND": "localhost"})]
)
def test_a_bind_address_without_a_port_lists_every_form_bind_takes(
    args: list[str], variables: dict[str, str]
) -> None:
    result = run_to_exit(*args, "testapps:hello", env=child_environment() | variables)
    assert result.returncode == 2
    assert result.stderr == (
        "fcgigw: address must be HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N, got 'localhost'\n"
    )


def test_settings_come_from_fcgigw_variables() -> None:
    environ = child_environment() | {"FCGIGW_THREADS": "3", "FCGIGW_MULTIPLEX_CONNECTIONS": "no"}
    address = f"127.0.0.1:{free_port()}"
    with run_fcgigw("testapps:router", address=address, env=environ):
        with FastCGIClient(address, timeout=TIMEOUT) as client:
            values = client.get_values([b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"])
    assert values == {b"FCGI_MAX_REQS": b"3", b"FCGI_MPXS_CONNS": b"0"}


def test_sigterm_lets_a_running_request_finish_then_exits_0() -> None:
    with run_fcgigw("testapps:router") as server:
        result: list[int] = []

        def slow() -> None:
            with FastCGIClient(server.address, timeout=TIMEOUT) as client:
                result.append(client.request(build_params("GET", "/slow?seconds=1")).status)

        thread = threading.Thread(target=slow)
        thread.start()
        server.wait_for_log("slow request started")  # the app is inside the request
        server.process.send_signal(signal.SIGTERM)
        thread.join(TIMEOUT)
        assert server.process.wait(TIMEOUT) == 0
    assert result == [200]


def test_sigint_stops_at_once_with_exit_0() -> None:
    with run_fcgigw("testapps:router") as server:
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(TIMEOUT) == 0


@pytest.mark.parametrize("app", ["testapps:router", "asgiapps:hello"])
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU])
def test_reload_signals_without_workers_are_logged_and_ignored(
    app: str, signum: signal.Signals
) -> None:
    """Nothing to reload or resize in one process: by default HUP killed it (no graceful
    stop: a `kill -HUP` meant as a reload dropped every request), and TTIN and TTOU
    suspended it, its connections hanging."""
    with run_fcgigw(app) as server:
        server.process.send_signal(signum)
        server.wait_for_log(f"{signum.name} ignored: reloading and resizing need --workers")
        assert hello(server.address) == 200
        assert server.process.poll() is None


def test_allow_from_refuses_other_peers_and_accepts_listed_ones() -> None:
    with run_fcgigw("--allow-from", "10.0.0.0/8,192.0.2.7", "testapps:router") as server:
        with FastCGIClient(server.address, timeout=TIMEOUT) as client:
            client.begin(build_params("GET", "/hello"))
            assert isinstance(client.next_event(), ConnectionClosed)
        assert "refused connection from 127.0.0.1: not in --allow-from" in server.log()
    with run_fcgigw("--allow-from", "::1,127.0.0.0/8", "testapps:router") as server:
        assert hello(server.address) == 200


def test_fcgi_web_server_addrs_is_honoured() -> None:
    environ = child_environment() | {"FCGI_WEB_SERVER_ADDRS": "192.0.2.1"}
    with run_fcgigw("testapps:router", env=environ) as server:
        with FastCGIClient(server.address, timeout=TIMEOUT) as client:
            # The server closes a refused peer at once: sending may already meet the reset.
            events: list[object] = []
            try:
                client.begin(build_params("GET", "/hello"))
                client.send_stream(1, b"", RecordType.STDIN)
                events = list(client.response_events(1))
            except ConnectionError:
                pass
            assert not [e for e in events if isinstance(e, EndRequest)]
        server.wait_for_log("refused connection from 127.0.0.1: not in --allow-from")


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured here")
    with run_fcgigw("testapps:router", address=f"[::1]:{free_port()}") as server:
        assert hello(server.address) == 200


def test_roles_not_enabled_get_unknown_role() -> None:
    with run_fcgigw("--roles", "responder", "testapps:router") as server:
        with FastCGIClient(server.address, timeout=TIMEOUT) as client:
            response = client.request(build_params("GET", "/hello"), role=Role.AUTHORIZER)
    assert response.protocol_status == ProtocolStatus.UNKNOWN_ROLE


def test_unix_socket_mode_default_is_not_world_writable_and_settable() -> None:
    path = Path(short_tempdir()) / "app.sock"
    with run_fcgigw("testapps:router", address=f"unix:{path}"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
    path2 = Path(short_tempdir()) / "app.sock"
    with run_fcgigw("--socket-mode", "600", "testapps:router", address=f"unix:{path2}") as server:
        assert stat.S_IMODE(path2.stat().st_mode) == 0o600
        assert hello(server.address) == 200


def test_a_stale_unix_socket_file_is_replaced_and_a_live_one_refused() -> None:
    path = Path(short_tempdir()) / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    with run_fcgigw("testapps:router", address=f"unix:{path}") as server:
        assert hello(server.address) == 200
        second = run_to_exit("--bind", f"unix:{path}", "testapps:hello")
        assert second.returncode == 4
        assert "another process is listening" in second.stderr


def test_a_regular_file_is_never_removed_for_a_socket() -> None:
    path = Path(short_tempdir()) / "precious.txt"
    path.write_text("keep me")
    result = run_to_exit("--bind", f"unix:{path}", "testapps:hello")
    assert result.returncode == 4
    assert path.read_text() == "keep me"


def test_inherited_listening_socket_fd() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    process = subprocess.Popen(
        fcgigw_command("--bind", f"fd://{listener.fileno()}", "testapps:router"),
        pass_fds=[listener.fileno()],
        env=child_environment(),
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    listener.close()
    try:
        assert hello(f"127.0.0.1:{port}") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0


def test_fd_that_is_not_a_socket_is_a_clear_error() -> None:
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run(
            fcgigw_command("--bind", f"fd://{read_end}", "testapps:hello"),
            pass_fds=[read_end],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=child_environment(),
            cwd=REPO,
            check=False,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 4
    assert "is not a socket" in result.stderr


def test_one_thread_still_answers_multiplexed_requests() -> None:
    with run_fcgigw("--threads", "1", "testapps:router") as server:
        with FastCGIClient(server.address, timeout=TIMEOUT) as client:
            client.begin(build_params("GET", "/slow?seconds=0.2"), keep_connection=True)
            client.send_stream(1, b"", RecordType.STDIN)
            client.begin(build_params("GET", "/hello"), keep_connection=True, request_id=2)
            client.send_stream(2, b"", RecordType.STDIN)
            ended = set()
            while len(ended) < 2:
                event = client.next_event()
                if isinstance(event, EndRequest):
                    ended.add(event.request_id)
    assert ended == {1, 2}


def test_diagnostics_page_when_no_app_is_given() -> None:
    with run_fcgigw() as server, FastCGIClient(server.address, timeout=TIMEOUT) as client:
        response = client.request(build_params("GET", "/some/path?format=json"))
    assert response.status == 200
    assert b'"PATH_INFO": "/some/path"' in response.body
