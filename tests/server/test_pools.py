"""A file of pools under one master (--config with [pool.NAME] tables): each pool serves
with its own settings, env and user; SIGHUP applies an edited file to the pools it changed
and does not touch the others, under load; a bad file changes nothing; TERM stops all."""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from servers import (
    POOL_USER_LINE,
    REPO,
    RunningProcess,
    child_environment,
    fcgigw_command,
    free_port,
    short_tempdir,
    stop,
    wait_for_text,
)

from fcgigw.client import FastCGIClient, FastCGIError, build_params

TIMEOUT = 20


@dataclass
class Master:
    """A running ``fcgigw --config FILE`` and where its pools listen."""

    running: RunningProcess
    config: Path
    addresses: dict[str, str]

    @property
    def pid(self) -> int:
        return self.running.process.pid

    def log(self) -> str:
        return self.running.log()

    def pool_pid(self, name: str, after: int = 0) -> int:
        """The latest process the master started for pool ``name`` (in the log from
        ``after``), once it serves."""
        deadline = time.monotonic() + TIMEOUT
        while not (found := re.findall(rf"pool {name}: process (\d+) serving", self.log()[after:])):
            assert time.monotonic() < deadline, f"pool {name} does not serve:\n{self.log()}"
            time.sleep(0.01)
        return int(found[-1])

    def said(self, text: str, after: int) -> bool:
        """Whether the master itself logged a line with ``text`` since ``after``."""
        return re.search(rf"\[{self.pid}\] .*{text}", self.log()[after:]) is not None

    def reload(self, text: str, done: str) -> int:
        """Write ``text`` as the file, SIGHUP, wait for ``done`` in the log; the log offset
        where the reload began."""
        offset = len(self.log())
        self.config.write_text(text)
        self.running.process.send_signal(signal.SIGHUP)
        wait_for_text(lambda: self.log()[offset:], done)
        return offset


def pools_text(sites: dict[str, str], addresses: dict[str, str], extra: str = "") -> str:
    """A file of pools: each site's pool runs poolapps:app with SITE=<its value>."""
    text = f"threads = 2\ngraceful-timeout-seconds = 10\n{POOL_USER_LINE}access-log = false\n"
    for name, site in sites.items():
        workers = 2 if name == "b" else 0  # one pool of each kind
        text += (
            f'\n[pool.{name}]\napp = "poolapps:app"\nbind = "{addresses[name]}"\n'
            f'workers = {workers}\n{extra}\n[pool.{name}.env]\nSITE = "{site}"\n'
        )
    return text


@contextlib.contextmanager
def run_master(sites: dict[str, str]) -> Iterator[Master]:
    workdir = Path(short_tempdir())
    workdir.chmod(0o755)  # the pools' user reaches the Unix socket's directory
    addresses = {
        "a": f"127.0.0.1:{free_port()}",
        "b": f"unix:{workdir}/b.sock",
        "c": f"127.0.0.1:{free_port()}",
    }
    config = workdir / "pools.toml"
    config.write_text(pools_text(sites, addresses))
    log_path = workdir / "fcgigw.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            fcgigw_command("--config", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(),
            cwd=REPO,
        )
    master = Master(RunningProcess(process, "", log_path), config, addresses)
    try:
        for name in sites:
            master.pool_pid(name)
        yield master
    finally:
        stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def get(address: str, path: str = "/") -> dict[str, str]:
    """poolapps:app's answer: site, pid, uid, … (as text)."""
    with FastCGIClient(address, timeout=TIMEOUT) as client:
        response = client.request(build_params("GET", path))
    assert response.status == 200, response
    return dict(line.split("=", 1) for line in response.body.decode().splitlines())


def descendants(pid: int) -> set[int]:
    """``pid``'s children, theirs, and so on (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass
class Load:
    """A thread sending requests one after another to one address until stopped."""

    address: str
    answers: list[dict[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(TIMEOUT)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(get(self.address))
            except (OSError, FastCGIError, AssertionError) as error:
                self.failures.append(repr(error))

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        target = len(self.answers) + count
        while len(self.answers) < target:
            assert time.monotonic() < deadline, self.failures[:3]
            time.sleep(0.01)


def test_two_pools_serve_with_their_own_env_and_user() -> None:
    with run_master({"a": "alpha", "b": "beta"}) as master:
        alpha, beta = get(master.addresses["a"]), get(master.addresses["b"])
        pool_b = master.pool_pid("b")
        workers_b = descendants(pool_b)
    assert (alpha["site"], beta["site"]) == ("alpha", "beta")
    if POOL_USER_LINE:
        assert alpha["uid"] == beta["uid"] == str(65534)
    assert int(beta["pid"]) in workers_b  # pool b's workers answer, under its supervisor
    assert len(workers_b) == 2


def test_sighup_replaces_the_edited_pool_only_and_no_request_fails() -> None:
    """Pool a's env is edited: a new process serves it on the same socket before the old
    one stops, and a request in flight in the old one finishes. Pool b is not signalled:
    its processes stay, and a client hammering it meanwhile sees no failure."""
    with run_master({"a": "a1", "b": "b1"}) as master:
        old_a = master.pool_pid("a")
        before_b = {master.pool_pid("b"), *descendants(master.pool_pid("b"))}
        in_flight: dict[str, str] = {}
        slow = threading.Thread(
            target=lambda: in_flight.update(get(master.addresses["a"], "/slow?1"))
        )
        with Load(master.addresses["b"]) as load_b, Load(master.addresses["a"]) as load_a:
            load_a.wait_for(20)
            load_b.wait_for(20)
            slow.start()
            time.sleep(0.2)  # the slow request is in the old process of pool a
            text = pools_text({"a": "a2", "b": "b1"}, master.addresses)
            offset = master.reload(text, "stopping the process it replaces")
            deadline = time.monotonic() + TIMEOUT
            while get(master.addresses["a"])["site"] != "a2":
                assert time.monotonic() < deadline
            load_a.wait_for(20)
            load_b.wait_for(20)
        slow.join(TIMEOUT)
        new_a = master.pool_pid("a", offset)
        after_b = {master.pool_pid("b"), *descendants(master.pool_pid("b"))}
        reload_log = master.log()[offset:]
        touched_b = master.said("pool b", offset)
        log = master.log()
    assert load_b.failures == []
    assert load_a.failures == []  # the master kept pool a's socket: none refused either
    assert {answer["site"] for answer in load_b.answers} == {"b1"}
    # (The log says why when a pool b process changed: CI saw one answer from a new pid once.)
    assert {int(answer["pid"]) for answer in load_b.answers} <= before_b, log
    assert after_b == before_b, log
    assert in_flight["site"] == "a1"  # the old process finished it
    assert new_a != old_a
    assert "SIGHUP: pool a changed" in reload_log
    assert not touched_b


def test_a_bad_file_on_sighup_changes_nothing() -> None:
    with run_master({"a": "a1", "b": "b1"}) as master:
        pids = {master.pool_pid("a"), master.pool_pid("b")}
        text = pools_text({"a": "a2", "b": "b2"}, master.addresses).replace(
            "threads = 2", "threads = 2\nworkers = many"
        )
        offset = master.reload(text, "nothing changed; the running pools keep serving")
        answers = get(master.addresses["a"]), get(master.addresses["b"])
        log = master.log()[offset:]
        assert {master.pool_pid("a"), master.pool_pid("b")} == pids
    assert [answer["site"] for answer in answers] == ["a1", "b1"]
    assert f"SIGHUP: {master.config}:2: workers: Invalid value" in log
    assert "starting it" not in log


def test_sighup_adds_and_removes_pools() -> None:
    with run_master({"a": "a1", "b": "b1"}) as master:
        pool_a = master.pool_pid("a")
        pool_b = master.pool_pid("b")
        offset = master.reload(
            pools_text({"a": "a1", "c": "c1"}, master.addresses), "pool c: process"
        )
        served_c = get(master.addresses["c"])
        served_a = get(master.addresses["a"])
        # Pool b's socket is closed: connections are refused once its process has exited.
        deadline = time.monotonic() + TIMEOUT
        while pool_b in descendants(master.pid) or Path(f"/proc/{pool_b}").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(OSError):
            get(master.addresses["b"])
        log = master.log()[offset:]
        touched_a = master.said("pool a", offset)
    assert served_c["site"] == "c1"
    assert (served_a["site"], int(served_a["pid"])) == ("a1", pool_a)
    assert "SIGHUP: pool b removed: stopping it" in log
    assert "SIGHUP: pool c added: starting it" in log
    assert not touched_a


def test_a_replacement_that_cannot_start_keeps_the_running_pool() -> None:
    with run_master({"a": "a1"}) as master:
        pool_a = master.pool_pid("a")
        broken = pools_text({"a": "a2"}, master.addresses).replace(
            "poolapps:app", "no_such_module:app"
        )
        master.reload(broken, "the running one keeps serving")
        served = get(master.addresses["a"])
        assert (served["site"], served["pid"]) == ("a1", str(pool_a))
        # Fixed: the next SIGHUP starts it, and the old one stops. Until that one has stopped
        # accepting, a request may still reach it: polled, as the SIGHUP test above does.
        text = pools_text({"a": "a3"}, master.addresses)
        offset = master.reload(text, "stopping the process it replaces")
        assert master.pool_pid("a", offset) != pool_a
        deadline = time.monotonic() + TIMEOUT
        while get(master.addresses["a"])["site"] != "a3":
            assert time.monotonic() < deadline, "the replacement never serves"


def test_sigusr2_replaces_every_pool() -> None:
    with run_master({"a": "a1", "b": "b1"}) as master:
        old = {master.pool_pid("a"), master.pool_pid("b")}
        offset = len(master.log())
        with Load(master.addresses["a"]) as load:
            load.wait_for(10)
            master.running.process.send_signal(signal.SIGUSR2)
            new = {master.pool_pid("a", offset), master.pool_pid("b", offset)}
            load.wait_for(10)
    assert old.isdisjoint(new)
    assert load.failures == []


def test_sigterm_stops_every_pool() -> None:
    with run_master({"a": "a1", "b": "b1"}) as master:
        get(master.addresses["b"])
        processes = descendants(master.pid)
        assert len(processes) == 4  # pool a; pool b's supervisor and its two workers
        master.running.process.send_signal(signal.SIGTERM)
        assert master.running.process.wait(TIMEOUT) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in processes)
        assert "master stopped" in master.log()


def test_a_pool_that_cannot_start_leaves_the_others_serving(tmp_path: Path) -> None:
    a, b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    text = pools_text({"a": "a1", "b": "b1"}, {"a": a, "b": b})
    config = tmp_path / "pools.toml"
    config.write_text(text.replace("poolapps:app", "no_such_module:app", 1))
    log_path = tmp_path / "log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            fcgigw_command("--config", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(),
            cwd=REPO,
        )
    try:
        wait_for_text(log_path.read_text, "pool a cannot start (exit 3); fix it and send SIGHUP")
        assert get(b)["site"] == "b1"
    finally:
        stop(process)
    # When no pool can start, the master stops with the app's exit code.
    config.write_text(text.replace("poolapps:app", "no_such_module:app"))
    with open(log_path, "wb") as log:
        result = subprocess.run(
            fcgigw_command("--config", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(),
            cwd=REPO,
            timeout=TIMEOUT,
            check=False,
        )
    assert result.returncode == 3
    assert "no pool can start; stopping" in log_path.read_text()


# -- the examples, as shipped with only users and paths changed ------------------------------

EXAMPLES = REPO / "examples"


def localised(text: str, replacements: dict[str, str]) -> str:
    """An example file with each line that starts with a key of ``replacements`` replaced,
    and ``user = ...`` lines by nobody (dropped when not root) unless a key says else."""
    lines = []
    for line in text.splitlines():
        if line.startswith("user = "):
            line = POOL_USER_LINE.strip()
        for key, replacement in replacements.items():
            if line.startswith(key):
                line = replacement
        lines.append(line)
    return "\n".join(lines) + "\n"


def check_config(path: Path) -> list[str]:
    result = subprocess.run(
        fcgigw_command("--check-config", str(path)),
        capture_output=True,
        text=True,
        env=child_environment(),
        cwd=REPO,
        timeout=TIMEOUT,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.splitlines()


def test_the_readme_pools_example_is_valid(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("# /etc/fcgigw/pools.toml\n")
    text = readme[start : readme.index("```", start)]
    path = tmp_path / "pools.toml"
    path.write_text(localised(text, {"chdir = ": f'chdir = "{tmp_path}"'}))
    assert [line.split(":")[0] for line in check_config(path)] == [
        "pool shop",
        "pool api",
        "pool blog",
    ]


def test_the_shared_hosting_example_serves_both_sites() -> None:
    """examples/shared-hosting/pools.toml with the Flask and Django examples where the file
    expects them and the sockets in a temporary directory. The users are replaced by
    --allow-root: as another user, the apps' imports depend on where Python is installed
    (test_privileges.py and the tests above check the switch)."""
    workdir = Path(short_tempdir())
    workdir.chmod(0o755)
    text = localised(
        (EXAMPLES / "shared-hosting" / "pools.toml").read_text(),
        {
            "user = ": "allow-root = true",
            'chdir = "/home/alice/myapp"': f'chdir = "{EXAMPLES}"',
            'chdir = "/home/bob/django_site"': f'chdir = "{EXAMPLES / "django_site"}"',
            'bind = "unix:/run/fcgigw/alice.sock"': f'bind = "unix:{workdir}/alice.sock"',
            'bind = "unix:/run/fcgigw/bob.sock"': f'bind = "unix:{workdir}/bob.sock"',
            # Giving the socket to the group www-data needs root.
            **({} if os.geteuid() == 0 else {"socket-group = ": ""}),
        },
    )
    config = workdir / "pools.toml"
    config.write_text(text)
    sockets = [f"{workdir}/alice.sock", f"{workdir}/bob.sock"]
    assert check_config(config) == [
        f"pool alice: flask_app:app on unix:{sockets[0]}, 1 process, as the starting user",
        f"pool bob: mysite.wsgi:application on unix:{sockets[1]}, 2 workers, as the starting user",
    ]
    log_path = workdir / "fcgigw.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            fcgigw_command("--config", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(),
            cwd=REPO,
        )
    master = Master(RunningProcess(process, "", log_path), config, {})
    try:
        master.pool_pid("alice")
        master.pool_pid("bob")
        alice, bob = _page(f"unix:{sockets[0]}"), _page(f"unix:{sockets[1]}")
        modes = [os.stat(path) for path in sockets]
    finally:
        stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
    assert "Hello from Flask over FastCGI" in alice
    assert "Hello from Django over FastCGI" in bob
    for mode in modes:
        assert mode.st_mode & 0o777 == 0o660
        if os.geteuid() == 0:
            assert mode.st_gid == grp.getgrnam("www-data").gr_gid


def _page(address: str) -> str:
    with FastCGIClient(address, timeout=TIMEOUT) as client:
        response = client.request(build_params("GET", "/"))
    assert response.status == 200, response
    return response.body.decode()


def test_the_systemd_pools_unit_is_valid(tmp_path: Path) -> None:
    """examples/systemd/fcgigw-pools.service as shipped, with the fcgigw of its Exec lines
    pointed at a program that exists here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = (EXAMPLES / "systemd" / "fcgigw-pools.service").read_text()
    assert unit.count("/srv/fcgigw/venv/bin/fcgigw") == 3
    unit = unit.replace("/srv/fcgigw/venv/bin/fcgigw", f"{sys.executable} -m fcgigw")
    (tmp_path / "fcgigw-pools.service").write_text(unit)
    result = subprocess.run(
        [analyze, "verify", "--man=no", "fcgigw-pools.service"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "fcgigw" in line]
    assert complaints == []
    assert result.returncode == 0
