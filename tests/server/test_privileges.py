"""--user, --group, --allow-root, --chdir: the sockets are bound as root, and the processes
that import the app switch to the user first; /proc shows who they are."""

from __future__ import annotations

import os
import pwd
import socket
import time
from pathlib import Path

import pytest
from servers import child_environment, run_fcgigw, run_to_exit, short_tempdir

from fcgigw.client import FastCGIClient, build_params

TIMEOUT = 20
NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def get(address: str, path: str = "/") -> dict[str, str]:
    """poolapps:app's answer: site, pid, uid, euid, gid, groups, cwd (as text)."""
    with FastCGIClient(address, timeout=TIMEOUT) as client:
        response = client.request(build_params("GET", path))
    assert response.status == 200, response
    return dict(line.split("=", 1) for line in response.body.decode().splitlines())


def proc_ids(pid: int) -> dict[str, list[int]]:
    """The Uid, Gid and Groups lines of /proc/PID/status (real, effective, saved, fs)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    found = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            found[key] = [int(part) for part in value.split()]
    return found


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for_children(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + TIMEOUT
    while len(found := children_of(pid)) < count:
        assert time.monotonic() < deadline, f"{pid} has children {found}, not {count}"
        time.sleep(0.05)
    return found


def without_allow_root() -> dict[str, str]:
    env = child_environment()
    env.pop("FCGIGW_ALLOW_ROOT")
    return env


def test_one_process_switches_to_the_user_after_binding_as_root() -> None:
    """The socket is in a directory only root may enter: bound before the switch, it serves."""
    directory = short_tempdir()  # mode 700, root's
    address = f"unix:{directory}/app.sock"
    with run_fcgigw(
        "--user", "nobody", "--socket-group", "nogroup", "poolapps:app", address=address
    ) as server:
        served = get(address)
        ids = proc_ids(server.process.pid)
        server.wait_for_log("running as uid 65534")
    assert ids["Uid"] == [NOBODY.pw_uid] * 4
    assert ids["Gid"] == [NOBODY.pw_gid] * 4
    assert ids["Groups"] == [NOBODY.pw_gid]  # root's supplementary groups are gone
    assert served["uid"] == served["euid"] == str(NOBODY.pw_uid)
    assert served["gid"] == str(NOBODY.pw_gid)
    assert os.stat(f"{directory}/app.sock").st_gid == NOBODY.pw_gid


def test_workers_switch_and_the_supervisor_keeps_root() -> None:
    with run_fcgigw("--workers", "2", "--user", "nobody", "poolapps:app") as server:
        server.wait_for_log("serving (generation 0)", 2)
        workers = wait_for_children(server.process.pid, 2)
        served = get(server.address)
        worker_ids = [proc_ids(pid) for pid in workers]
        supervisor_ids = proc_ids(server.process.pid)
    assert int(served["pid"]) in workers
    for ids in worker_ids:
        assert ids["Uid"] == [NOBODY.pw_uid] * 4
        assert ids["Gid"] == [NOBODY.pw_gid] * 4
    assert supervisor_ids["Uid"] == [0] * 4


def test_group_alone_and_chdir(tmp_path: Path) -> None:
    """--group without --user keeps uid 0 (so it needs --allow-root with workers);
    --chdir is entered before the app is imported, and the app is found there."""
    (tmp_path / "chdirapp.py").write_text("from poolapps import app\n")
    tmp_path.chmod(0o755)
    with run_fcgigw(
        "--workers", "1", "--group", "nogroup", "--chdir", str(tmp_path), "chdirapp:app"
    ) as server:
        server.wait_for_log("serving (generation 0)")
        served = get(server.address)
    assert served["uid"] == "0"
    assert served["gid"] == served["groups"] == str(NOBODY.pw_gid)
    assert served["cwd"] == str(tmp_path)


@pytest.mark.parametrize("user", [[], ["--user", "root"], ["--user", "0"]])
def test_workers_as_root_need_allow_root(user: list[str]) -> None:
    result = run_to_exit(
        "--bind", "127.0.0.1:0", "--workers", "1", *user, "poolapps:app", env=without_allow_root()
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "fcgigw: user: the workers would run as root; give --user (e.g. --user www-data), "
        "or --allow-root if that is meant"
    ]


def test_allow_root_lets_workers_run_as_root() -> None:
    with run_fcgigw(
        "--workers", "1", "--allow-root", "poolapps:app", env=without_allow_root()
    ) as server:
        server.wait_for_log("serving (generation 0)")
        assert get(server.address)["uid"] == "0"


def test_one_process_as_root_is_not_refused() -> None:
    """Without --workers fcgigw is often started by a web server (mod_fcgid, spawn-fcgi) as
    whoever runs it; the rule is for the workers fcgigw itself starts."""
    with run_fcgigw("poolapps:app", env=without_allow_root()) as server:
        assert get(server.address)["uid"] == "0"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--user", "no-such-user"], "fcgigw: user: no user 'no-such-user'"),
        (["--group", "no-such-group"], "fcgigw: group: no group 'no-such-group'"),
        (["--chdir", "relative/dir"], "fcgigw: chdir must start with '/'"),
        (["--chdir", "/no/such/dir"], "fcgigw: chdir: no directory '/no/such/dir'"),
    ],
)
def test_bad_users_and_groups_are_one_line(args: list[str], line: str) -> None:
    result = run_to_exit("--bind", "127.0.0.1:0", *args, "poolapps:app")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]


def test_nothing_is_bound_when_the_user_is_wrong() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_to_exit("--bind", f"127.0.0.1:{port}", "--user", "no-such-user", "poolapps:app")
    assert result.returncode == 2
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # still free
