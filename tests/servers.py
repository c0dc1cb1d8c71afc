"""Start real processes for tests: fcgigw in a subprocess, a real web server in front.

Everything listens on 127.0.0.1 or a Unix socket in a temporary directory, is bounded by
timeouts, and is stopped by PID when the test ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fcgigw

REPO = Path(__file__).resolve().parent.parent
#: Where the fcgigw these tests import lives: children must run the same build.
PACKAGE_ROOT = Path(fcgigw.__file__).resolve().parent.parent
LOG_TIMEOUT_SECONDS = 10
EXIT_TIMEOUT_SECONDS = 20
START_TIMEOUT_SECONDS = 15.0
#: The ``user`` line of a pool in a test's file of pools: as root the pools run as nobody
#: (the root rule), otherwise as whoever runs the tests.
POOL_USER_LINE = 'user = "nobody"\n' if os.geteuid() == 0 else ""


#: Ports handed out by free_port(): below the kernel's ephemeral range (32768 and up on
#: Linux), where bind(0) and outgoing connections take theirs, and a slice per test process
#: (each pytest-xdist worker, in this session or in another one running at the same time),
#: so that a port handed to a server that is still starting cannot be handed to a test in
#: another process, nor taken by the kernel, before the server binds it.
PORTS_START, PORT_SLICES = 20000, 16
PORTS_PER_SLICE = (32768 - PORTS_START) // PORT_SLICES
#: One lock file per slice: a process owns the slice whose file it has locked until it exits.
PORT_SLICE_LOCKS = Path(tempfile.gettempdir()) / "fcgigw-test-ports"
_ports_given = itertools.count()
_slice: list[int] = []  # [first port, lock fd] once claimed


def _first_port_of_own_slice() -> int:
    """Claim a slice of ports no other test process on this machine holds (flock)."""
    if not _slice:
        PORT_SLICE_LOCKS.mkdir(exist_ok=True)
        for number in range(PORT_SLICES):
            fd = os.open(PORT_SLICE_LOCKS / str(number), os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # another test process has it
                continue
            _slice.extend((PORTS_START + number * PORTS_PER_SLICE, fd))  # fd kept: the lock
            break
        else:
            raise RuntimeError(f"more than {PORT_SLICES} test processes hold port slices")
    return _slice[0]


def free_port() -> int:
    """An unused TCP port on 127.0.0.1, from this test process's own slice."""
    first = _first_port_of_own_slice()
    for _ in range(PORTS_PER_SLICE):
        port = first + next(_ports_given) % PORTS_PER_SLICE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}..{first + PORTS_PER_SLICE - 1}")


#: The directories short_tempdir() made in this process, removed when the session ends.
_made_dirs: list[str] = []

#: Directories h2o makes in /tmp whatever TMPDIR says (its spawned app's socket,
#: neverbleed's) and leaves behind when it stops.
H2O_TEMP_PATTERNS = ("h2o.fcgisock.*", "openssl-privsep.*")


def short_tempdir() -> str:
    """A temporary directory with a short path (Unix socket paths must stay under 108 bytes),
    removed at the end of the test session (remove_temporary_dirs)."""
    path = tempfile.mkdtemp(prefix="fcgigw-", dir="/tmp")
    _made_dirs.append(path)
    return path


def remove_temporary_dirs() -> None:
    """Remove what short_tempdir() made: by then every process a test started has stopped."""
    while _made_dirs:
        shutil.rmtree(_made_dirs.pop(), ignore_errors=True)


def _remove_dead_socket_dirs(directories: Iterable[Path], wait: float = 2.0) -> None:
    """Remove each directory whose Unix sockets all refuse connections: one left by a
    stopped server, not one another test's running server still listens in. A helper of
    the stopped server may take a moment to exit (h2o's neverbleed daemon): waits ``wait``
    seconds at most for it."""
    waiting = set(directories)
    deadline = time.monotonic() + wait
    while waiting:
        for directory in list(waiting):
            try:
                sockets = [path for path in directory.iterdir() if path.is_socket()]
            except FileNotFoundError:  # removed by another xdist worker's test
                sockets = []
            if not sockets or not any(_accepts(path) for path in sockets):
                waiting.discard(directory)
                if sockets:
                    shutil.rmtree(directory, ignore_errors=True)
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def wait_until_connectable(address: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until ``address`` (host:port or unix:path) accepts connections."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            if address.startswith("unix:"):
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(address[5:])
            else:
                host, _, port = address.rpartition(":")
                socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {address} after {START_TIMEOUT_SECONDS} s")


@dataclass
class RunningProcess:
    """A started process, its address and where its stderr went."""

    process: subprocess.Popen[bytes]
    address: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, occurrences: int = 1) -> None:
        """Wait until ``text`` is in the log ``occurrences`` times: lines such as the access
        log are written after the client already has its response."""
        wait_for_text(self.log, text, occurrences)


def wait_for_text(read: Callable[[], str], text: str, occurrences: int = 1) -> None:
    """Wait until ``text`` is ``occurrences`` times in what ``read()`` returns (a log)."""
    deadline = time.monotonic() + LOG_TIMEOUT_SECONDS
    while read().count(text) < occurrences:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the log {occurrences}x:\n{read()}")
        time.sleep(0.01)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Stop ``process`` with ``sig``, then SIGKILL after a timeout; return its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def fcgigw_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fcgigw", *args]


def run_to_exit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m fcgigw *args`` until it exits (start-up errors), output captured as text."""
    return subprocess.run(
        fcgigw_command(*args),
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_SECONDS,
        env=env or child_environment(),
        cwd=REPO,
        check=False,
    )


def child_environment() -> dict[str, str]:
    """The environment for child processes: the fcgigw under test (the source tree, or the
    compiled build tox installed) and the examples importable."""
    environ = dict(os.environ)
    paths = [str(PACKAGE_ROOT), str(REPO), str(REPO / "tests" / "apps")]
    if environ.get("PYTHONPATH"):
        paths.append(environ["PYTHONPATH"])
    environ["PYTHONPATH"] = os.pathsep.join(paths)
    # CI runs the tests as root, and workers as root need --allow-root (tests/server/
    # test_privileges.py removes this to test that rule).
    environ.setdefault("FCGIGW_ALLOW_ROOT", "1")
    return environ


@contextlib.contextmanager
def run_fcgigw(
    *args: str, address: str | None = None, env: dict[str, str] | None = None
) -> Iterator[RunningProcess]:
    """``python -m fcgigw --bind ADDRESS *args`` in a subprocess, until the block ends."""
    workdir = Path(short_tempdir())
    address = address or f"127.0.0.1:{free_port()}"
    log_path = workdir / "fcgigw.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            fcgigw_command("--bind", address, *args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env or child_environment(),
            cwd=REPO,
        )
    running = RunningProcess(process, address, log_path)
    try:
        wait_until_connectable(address, process)
        yield running
    finally:
        stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
{user}
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    fastcgi_temp_path {dir}/fastcgi;
    proxy_temp_path {dir}/proxy;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 64m;
    upstream fcgigw {{
        server {upstream};
        {keepalive}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location {location} {{
            include {fastcgi_params};
            fastcgi_pass fcgigw;
            {keep_conn}
            {extra}
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )


@contextlib.contextmanager
def run_nginx(
    upstream: str, *, keepalive: bool = False, extra: str = "", location: str = "/"
) -> Iterator[RunningProcess]:
    """nginx (stock Debian fastcgi_params) on 127.0.0.1 in front of a FastCGI ``upstream``."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    workdir = Path(short_tempdir())
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=workdir,
            port=port,
            upstream=upstream,
            user="user root;" if os.geteuid() == 0 else "",
            keepalive="keepalive 8;" if keepalive else "",
            keep_conn="fastcgi_keep_conn on;" if keepalive else "",
            fastcgi_params="/etc/nginx/fastcgi_params",
            extra=extra,
            location=location,
        )
    )
    log_path = workdir / "error.log"
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(workdir), "-e", str(log_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    running = RunningProcess(process, f"127.0.0.1:{port}", log_path)
    try:
        wait_until_connectable(running.address, process)
        yield running
    finally:
        stop(process, signal.SIGQUIT)
        shutil.rmtree(workdir, ignore_errors=True)


def _sbin_binary(name: str) -> str | None:
    path = f"/usr/sbin/{name}"
    return shutil.which(name) or (path if os.access(path, os.X_OK) else None)


def lighttpd_binary() -> str | None:
    return _sbin_binary("lighttpd")


def apache_binary() -> str | None:
    return _sbin_binary("apache2")


def haproxy_binary() -> str | None:
    return _sbin_binary("haproxy")


def example_config(path: Path, values: dict[str, str]) -> str:
    """The example config at ``path`` with each line that starts with a key of ``values``
    (``var.http_port``, ``Define HTTP_PORT``) replaced by that value."""
    lines = path.read_text().splitlines()
    for key, replacement in values.items():
        matches = [n for n, line in enumerate(lines) if line.startswith(key)]
        if len(matches) != 1:
            raise ValueError(f"{path.name}: {len(matches)} lines start with {key!r}")
        lines[matches[0]] = replacement
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _run_web_server(
    conf_text: str,
    conf_name: str,
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Iterator[RunningProcess]:
    """Write ``conf_text`` into a fresh work dir, start ``command + [CONF]`` in the
    foreground with its output in the work dir's server.log, until the block ends. The conf
    text contains ``{port}`` and ``{dir}`` for the chosen port and the work dir; ``{dir}`` in
    ``command`` and in ``env``'s values becomes the work dir too."""
    workdir = Path(short_tempdir())
    port = free_port()
    conf = workdir / conf_name
    conf.write_text(conf_text.replace("{port}", str(port)).replace("{dir}", str(workdir)))
    log_path = workdir / "server.log"
    command = [arg.replace("{dir}", str(workdir)) for arg in command]
    if env is not None:
        env = {name: value.replace("{dir}", str(workdir)) for name, value in env.items()}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,  # its own process group: see below
        )
    running = RunningProcess(process, f"127.0.0.1:{port}", log_path)
    try:
        wait_until_connectable(running.address, process)
        yield running
    finally:
        stop(process, stop_signal)
        _kill_group(process.pid)
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    """Kill what the server left behind in its process group: mod_fcgid's process manager
    and the apps it started outlive an Apache that had to be killed."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left


@contextlib.contextmanager
def run_lighttpd(conf_text: str) -> Iterator[RunningProcess]:
    """``lighttpd -D -f CONF`` on 127.0.0.1; ``{port}`` and ``{dir}`` in ``conf_text`` become
    its port and work dir."""
    binary = lighttpd_binary()
    if binary is None:
        raise RuntimeError("lighttpd is not installed")
    with _run_web_server(conf_text, "lighttpd.conf", [binary, "-D", "-f"]) as running:
        yield running


@contextlib.contextmanager
def run_apache(conf_text: str) -> Iterator[RunningProcess]:
    """``apache2 -X -f CONF`` (one process, in the foreground) on 127.0.0.1; ``{port}`` and
    ``{dir}`` in ``conf_text`` become its port and work dir. As root it logs an AH02155
    alert (no User to switch to) and serves anyway."""
    binary = apache_binary()
    if binary is None:
        raise RuntimeError("apache2 is not installed")
    with _run_web_server(conf_text, "apache2.conf", [binary, "-X", "-f"]) as running:
        yield running


def h2o_binary() -> str | None:
    return shutil.which("h2o")


def caddy_binary() -> str | None:
    return shutil.which("caddy")


@contextlib.contextmanager
def run_nginx_config(conf_text: str) -> Iterator[RunningProcess]:
    """``nginx -p DIR -e stderr -c CONF`` in the foreground (the config says ``daemon off``)
    on 127.0.0.1; ``{port}`` and ``{dir}`` in ``conf_text`` become its port and work dir, which
    is also nginx's prefix: relative paths in the config (pid, temp paths) land there. Stopped
    with SIGTERM (fast shutdown): a graceful one waits for requests that may hang."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    command = [binary, "-e", "stderr", "-p", "{dir}", "-c"]
    with _run_web_server(conf_text, "nginx.conf", command) as running:
        yield running


@contextlib.contextmanager
def run_h2o(conf_text: str, env: dict[str, str] | None = None) -> Iterator[RunningProcess]:
    """``h2o -c CONF`` in the foreground on 127.0.0.1, with ``env`` (h2o passes its whole
    environment to the apps it spawns); ``{port}`` and ``{dir}`` as for run_lighttpd."""
    binary = h2o_binary()
    if binary is None:
        raise RuntimeError("h2o is not installed")
    before = _h2o_temp_dirs()
    try:
        with _run_web_server(conf_text, "h2o.conf", [binary, "-c"], env=env) as running:
            yield running
    finally:
        _remove_dead_socket_dirs(_h2o_temp_dirs() - before)


def _h2o_temp_dirs() -> set[Path]:
    return {path for pattern in H2O_TEMP_PATTERNS for path in Path("/tmp").glob(pattern)}


@contextlib.contextmanager
def run_caddy(conf_text: str) -> Iterator[RunningProcess]:
    """``caddy run --adapter caddyfile --config Caddyfile`` on 127.0.0.1; ``{port}`` and
    ``{dir}`` as for run_lighttpd. Caddy's data and config directories (autosave.json) are
    in the work dir, not in $HOME. Stopped with SIGQUIT, at once: on SIGTERM Caddy waits for
    every request to finish."""
    binary = caddy_binary()
    if binary is None:
        raise RuntimeError("caddy is not installed")
    command = [binary, "run", "--adapter", "caddyfile", "--config"]
    env = {**os.environ, "HOME": "{dir}", "XDG_DATA_HOME": "{dir}", "XDG_CONFIG_HOME": "{dir}"}
    with _run_web_server(
        conf_text, "Caddyfile", command, env=env, stop_signal=signal.SIGQUIT
    ) as running:
        yield running


@contextlib.contextmanager
def run_haproxy(conf_text: str) -> Iterator[RunningProcess]:
    """``haproxy -db -f CONF`` (in the foreground) on 127.0.0.1; ``{port}`` and ``{dir}`` as
    for run_lighttpd. SIGTERM stops it at once."""
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError("haproxy is not installed")
    with _run_web_server(conf_text, "haproxy.cfg", [binary, "-db", "-f"]) as running:
        yield running


def nginx_upstream(*addresses: str, options: str = "") -> str:
    """run_nginx's ``upstream`` for several FastCGI servers (each with ``options``, such as
    ``max_fails=1 fail_timeout=10s``): nginx balances between them and, with
    ``fastcgi_next_upstream``, retries a failed request on the next one."""
    return "; server ".join(f"{address} {options}".strip() for address in addresses)
