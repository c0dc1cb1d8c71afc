"""--config FILE and --check-config FILE: TOML keys are the long option names, pools inherit
the top level, the command line and FCGIGW_* win over the file, and every problem is one
line naming the file, the line and the key."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import free_port, run_fcgigw, run_to_exit

from fcgigw.client import FastCGIClient, build_params
from fcgigw.config_file import ConfigFileError, read_config_file, summary

ROOT = os.geteuid() == 0
#: Pools run as nobody, so the root rule holds whoever runs the tests.
AS_NOBODY = 'user = "nobody"\n' if ROOT else ""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fcgigw.toml"
    path.write_text(text)
    return str(path)


def problems(path: str, cli: dict[str, object] | None = None, **environ: str) -> list[str]:
    with pytest.raises(ConfigFileError) as caught:
        read_config_file(path, cli or {}, environ)
    return caught.value.problems


def test_one_server_from_the_top_level(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'app = "myapp:app"\n'
        'bind = "unix:/run/a.sock"\n'
        "max-requests = 100\n"  # dashes, as on the command line
        "max_requests_jitter = 10\n"  # or underscores
        "socket-mode = 0o640\n"
        'roles = ["responder", "authorizer"]\n'
        "access-log = true\n"
        "[env]\n"
        'DJANGO_SETTINGS_MODULE = "mysite.settings"\n',
    )
    loaded = read_config_file(path, {}, {})
    config = loaded.main
    assert (config.app, config.bind, config.max_requests) == (
        "myapp:app",
        ("unix:/run/a.sock",),
        100,
    )
    assert (config.max_requests_jitter, config.socket_mode, config.access_log) == (10, 0o640, True)
    assert len(config.roles) == 2
    assert loaded.pools == {}
    assert loaded.env == {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
    assert summary(loaded) == [
        f"{path}: myapp:app on unix:/run/a.sock, 1 process, as the starting user"
    ]


def test_bind_is_a_string_or_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, 'bind = ["127.0.0.1:9000", "unix:/run/a.sock"]\nsocket-mode = "0660"\n')
    config = read_config_file(path, {}, {}).main
    assert config.bind == ("127.0.0.1:9000", "unix:/run/a.sock")
    assert config.socket_mode == 0o660


def test_the_command_line_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "threads = 3\nworkers = 0\nmax-requests = 7\n")
    config = read_config_file(
        path, {"threads": 5}, {"FCGIGW_THREADS": "4", "FCGIGW_MAX_REQUESTS": "9"}
    ).main
    assert (config.threads, config.max_requests, config.workers) == (5, 9, 0)
    assert config.graceful_timeout_seconds == 30  # the default, where nobody says otherwise


def test_pools_inherit_the_top_level(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"threads = 2\n{AS_NOBODY}"
        "[env]\nSHARED = 'yes'\nSITE = 'top'\n"
        "[pool.alpha]\napp = 'a:app'\nbind = '127.0.0.1:9001'\nworkers = 3\n"
        "[pool.alpha.env]\nSITE = 'alpha'\n"
        "[pool.beta]\napp = 'b:app'\nbind = 'unix:/run/beta.sock'\nthreads = 6\n",
    )
    loaded = read_config_file(path, {}, {"FCGIGW_LOG_LEVEL": "debug"})
    alpha, beta = loaded.pools["alpha"], loaded.pools["beta"]
    assert (alpha.config.threads, alpha.config.workers, beta.config.threads) == (2, 3, 6)
    assert alpha.env == {"SHARED": "yes", "SITE": "alpha"}
    assert beta.env == {"SHARED": "yes", "SITE": "top"}
    assert alpha.config.log_level == beta.config.log_level == "debug"
    user = "user nobody" if ROOT else "the starting user"
    assert summary(loaded) == [
        f"pool alpha: a:app on 127.0.0.1:9001, 3 workers, as {user}",
        f"pool beta: b:app on unix:/run/beta.sock, 1 process, as {user}",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("threads = 4\nthraeds = 5\n", ":2: thraeds: unknown setting; did you mean 'threads'?"),
        ("\n\nthreads = 'many'\n", ":3: threads: want an integer, got 'many'"),
        ("threads = 0\n", ":1: threads: must be at least 1"),
        ("body_stall_timeout_seconds = 0\n", ":1: body_stall_timeout_seconds: must be at least 1"),
        ("access-log = 1\n", ":1: access-log: want true or false, got 1"),
        (
            "socket_mode = 660\n",
            ':1: socket_mode: want an octal mode such as 0o660 or "660", got 660',
        ),
        (
            "bind = 'nowhere'\n",
            ":1: bind: address must be HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N, got 'nowhere'",
        ),
        ("bind = [1, 2]\n", ":1: bind: want a string or a list of strings, got [1, 2]"),
        ("interface = 'cgi'\n", ":1: interface: must be one of auto, wsgi, asgi"),
        ("app = 'x:y'\nthreads = = 3\n", ":2: threads: Invalid value"),
        ("threads = 1\nthreads = 2\n", ":2: threads: given twice"),
        ("[env]\nA = [1]\n", ":2: env.A: want a string, got [1]"),
        ("user = 'no-such-user'\n", ":1: user: no user 'no-such-user'"),
        ("chdir = '/no/such/dir'\n", ":1: chdir: no directory '/no/such/dir'"),
        ("chdir = 'relative'\n", ":1: chdir: must start with '/'"),
    ],
)
def test_a_problem_is_one_line_with_the_line_and_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    assert problems(path) == [path + expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pool.a]\napp = 'x:y'\n", ":1: pool.a: bind is required"),
        (
            "[pool.a]\nbind = '127.0.0.1:9001'\npid-file = '/run/a.pid'\n",
            ":3: pool.a.pid_file: set it",
        ),
        ("[pool.'a b']\nbind = '127.0.0.1:9001'\n", ":1: pool.a b: a pool name is letters"),
        (
            "[pool.a]\nbind = '127.0.0.1:9001'\n[pool.b]\nbind = ['127.0.0.1:9001']\n",
            ":4: pool.b.bind: 127.0.0.1:9001 is pool a's too",
        ),
        ("[pool.a]\nbind = '127.0.0.1:9001'\nworkers = -1\n", ":3: pool.a.workers: must not be"),
        ("workers = -1\n[pool.a]\nbind = '127.0.0.1:9001'\n", ":1: workers: must not be negative"),
    ],
)
def test_a_pool_problem_names_the_pool_and_the_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, AS_NOBODY + text)
    found = problems(path)
    assert len(found) == 1, found
    # With `user = "nobody"` inserted at the top, the file's lines move down by one.
    line, _, rest = expected[1:].partition(": ")
    shifted = int(line) + (1 if AS_NOBODY else 0)
    assert found[0].startswith(f"{path}:{shifted}: {rest}"), found


def test_every_problem_is_reported_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "threads = 0\n"  # inherited by both pools: one line, not three
        "[pool.a]\nbind = '127.0.0.1:9001'\nuser = 'nobody'\n"
        "[pool.b]\nbind = '127.0.0.1:9002'\nuser = 'nobody'\nworkrs = 2\n",
    )
    assert problems(path) == [
        f"{path}:1: threads: must be at least 1",
        f"{path}:8: pool.b.workrs: unknown setting; did you mean 'workers'?",
    ]


def test_a_bad_value_from_the_environment_is_named_so(tmp_path: Path) -> None:
    path = write(tmp_path, "threads = 2\n")
    assert problems(path, FCGIGW_WORKERS="-2") == [
        f"{path}: workers (from FCGIGW_WORKERS): must not be negative"
    ]


@pytest.mark.skipif(not ROOT, reason="the root rule applies to processes started as root")
def test_pools_as_root_need_a_user_or_allow_root(tmp_path: Path) -> None:
    path = write(tmp_path, "[pool.a]\nbind = '127.0.0.1:9001'\n")
    assert problems(path) == [
        f"{path}:1: pool.a: user: the workers would run as root; give --user "
        "(e.g. --user www-data), or --allow-root if that is meant"
    ]
    assert read_config_file(path, {"allow_root": True}, {}).pools["a"].config.allow_root


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "missing.toml")
    assert problems(path) == [
        f"{path}: cannot read it: [Errno 2] No such file or directory: '{path}'"
    ]


def test_check_config_prints_a_line_per_pool(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{AS_NOBODY}[pool.a]\napp = 'x:app'\nbind = '127.0.0.1:9001'\n"
        "[pool.b]\napp = 'y:app'\nbind = 'unix:/run/b.sock'\nworkers = 2\n",
    )
    result = run_to_exit("--check-config", path)
    assert result.returncode == 0, result.stderr
    user = "user nobody" if ROOT else "the starting user"
    assert result.stdout.splitlines() == [
        f"pool a: x:app on 127.0.0.1:9001, 1 process, as {user}",
        f"pool b: y:app on unix:/run/b.sock, 2 workers, as {user}",
    ]
    assert result.stderr == ""


def test_check_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "[pool.a]\nbind = '127.0.0.1:9001'\nthreads = 'x'\n[pool.b\n")
    result = run_to_exit("--check-config", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"fcgigw: {path}:4: Expected ']' at the end of a table declaration"
    ]


def test_a_file_without_pools_configures_the_one_server(tmp_path: Path) -> None:
    """--config with a top level only: the file's settings (here a bad one) are used."""
    path = write(tmp_path, "bind = '127.0.0.1:0'\nthreads = 0\n")
    result = run_to_exit("--config", path, "testapps:hello")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"fcgigw: {path}:2: threads: must be at least 1"]


def test_a_file_without_pools_serves_with_its_settings_and_env(tmp_path: Path) -> None:
    """The file names the app and its [env]; --bind on the command line wins over its bind."""
    address = f"127.0.0.1:{free_port()}"
    path = write(
        tmp_path,
        "app = 'poolapps:app'\nbind = '127.0.0.1:1'\nthreads = 3\n[env]\nSITE = 'from-file'\n",
    )
    with run_fcgigw("--config", path, address=address) as server:
        with FastCGIClient(address, timeout=20) as client:
            response = client.request(build_params("GET", "/"))
            values = client.get_values([b"FCGI_MAX_REQS"])
        server.wait_for_log("(3 threads)")
    assert response.status == 200
    assert b"site=from-file\n" in response.body
    assert values == {b"FCGI_MAX_REQS": b"3"}
