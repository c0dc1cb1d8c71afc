"""The web servers of the matrix (test_matrix.py), each started from its config in
examples/servers/ with only the ports, paths and user changed, in front of fcgigw serving
matrixapps (tests/apps). One Stack per server and interface: the web server, the fcgigw it
connects to (on TCP and on a Unix socket, ``--root-path /app`` unless the server splits the
path itself), and whatever the server spawns itself. Stacks are stopped by PID when the module ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hosting import Account, hosting_account, readable_by_all
from matrix_clients import TIMEOUT, CgiClient, Client, HttpClient
from servers import (
    REPO,
    RunningProcess,
    apache_binary,
    caddy_binary,
    child_environment,
    example_config,
    free_port,
    h2o_binary,
    haproxy_binary,
    lighttpd_binary,
    nginx_binary,
    run_apache,
    run_caddy,
    run_fcgigw,
    run_h2o,
    run_haproxy,
    run_lighttpd,
    run_nginx_config,
    wait_for_text,
    wait_until_connectable,
)

EXAMPLES = REPO / "examples" / "servers"
APPS = REPO / "tests" / "apps"
sys.path.append(str(APPS))  # test_matrix checks the bytes matrixapps sends
ROOT_PATH = "/app"
AS_ROOT = os.geteuid() == 0


@dataclass
class Setup:
    """What the stacks of one interface share."""

    interface: str  # "wsgi" or "asgi"
    workdir: Path  # readable by all: wrapper scripts, release files
    cert: Path
    key: Path
    account: Callable[[], Account]  # the hosting account for mod_fcgid, made on first use

    @property
    def app(self) -> str:
        return f"matrixapps:{self.interface}_app"

    def pem(self) -> Path:
        """The certificate and its key in one file, as lighttpd and HAProxy take them."""
        path = self.workdir / "cert-and-key.pem"
        path.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        return path

    def script(self, name: str, text: str) -> Path:
        path = self.workdir / f"{name}-{self.interface}"
        path.write_text(text)
        path.chmod(0o755)
        return path

    def spawned_app(self, name: str, python: str = sys.executable) -> Path:
        """examples/servers/app.fcgi, running matrixapps with ``python``."""
        command = f"exec {python} -m fcgigw {self.app}"
        return self.script(name, example_config(EXAMPLES / "app.fcgi", {"exec ": command}))


@dataclass
class Stack:
    """One web server in front of fcgigw, serving all of its variants."""

    http: str | None  # the web server's address; None for cgi-fcgi
    https: str | None
    log_path: Path  # the web server's stderr: its error log, and spawned apps' output
    shared_dir: Path  # readable by the apps, whichever user they run as
    fcgigw: RunningProcess | None = None  # the fcgigw it connects to over TCP and Unix
    cgi_program: Path | None = None
    cgi_environment: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str) -> None:
        """Wait until ``text`` is in the log: the server writes it after the response."""
        wait_for_text(self.log, text)

    def client(self, prefix: str, *, tls: bool = False, timeout: float = TIMEOUT) -> Client:
        if self.cgi_program is not None:
            return CgiClient(self.cgi_program, prefix, self.cgi_environment, self.log_path)
        address = self.https if tls else self.http
        assert address is not None
        return HttpClient(address, tls=tls, timeout=timeout)


def stack_of(
    setup: Setup, server: RunningProcess, https_port: int, fcgigw: RunningProcess | None
) -> Stack:
    https = f"127.0.0.1:{https_port}"
    wait_until_connectable(https, server.process)
    return Stack(server.address, https, server.log_path, setup.workdir, fcgigw)


#: The cgi-fcgi stack's --body-stall-timeout-seconds (the default's 10 s would make its cut
#: upload test wait that long).
CGI_FCGI_STALL_SECONDS = 2


@contextlib.contextmanager
def fcgigw_for(
    setup: Setup, name: str, *settings: str, root_path: str = ROOT_PATH
) -> Iterator[tuple[RunningProcess, Path]]:
    """fcgigw on a TCP port and a Unix socket, with --root-path ``root_path`` unless empty,
    and ``settings`` (more options)."""
    socket_path = setup.workdir / f"{name}-{setup.interface}.sock"
    mount = ("--root-path", root_path) if root_path else ()
    args = ("--bind", f"unix:{socket_path}", *mount, *settings, "--access-log", setup.app)
    with run_fcgigw(*args) as server:
        wait_until_connectable(f"unix:{socket_path}", server.process)
        yield server, socket_path


def tcp_port(server: RunningProcess) -> str:
    return server.address.rpartition(":")[2]


@contextlib.contextmanager
def nginx(setup: Setup) -> Iterator[Stack]:
    with fcgigw_for(setup, "nginx") as (app, socket_path):
        https_port = free_port()
        values = {
            "        listen 127.0.0.1:8080;": "        listen 127.0.0.1:{port};",
            "        listen 127.0.0.1:8443": f"        listen 127.0.0.1:{https_port} ssl http2;",
            "        ssl_certificate ": f"        ssl_certificate {setup.cert};",
            "        ssl_certificate_key ": f"        ssl_certificate_key {setup.key};",
            "        server 127.0.0.1:9000;": f"        server {app.address};",
            "        server unix:": f"        server unix:{socket_path};",
        }
        if AS_ROOT:  # the workers would run as www-data, which cannot reach the socket
            values["user www-data;"] = "user root;"
        with run_nginx_config(example_config(EXAMPLES / "nginx.conf", values)) as server:
            yield stack_of(setup, server, https_port, app)


@contextlib.contextmanager
def apache_proxy_fcgi(setup: Setup) -> Iterator[Stack]:
    with fcgigw_for(setup, "apache") as (app, socket_path):
        https_port = free_port()
        conf = example_config(
            EXAMPLES / "apache-proxy-fcgi.conf",
            {
                "Define HTTP_PORT": "Define HTTP_PORT {port}",
                "Define HTTPS_PORT": f"Define HTTPS_PORT {https_port}",
                "Define FCGIGW ": f"Define FCGIGW fcgi://{app.address}/",
                "Define FCGIGW_SOCKET": f"Define FCGIGW_SOCKET {socket_path}",
                "Define TLS_CERT": f"Define TLS_CERT {setup.cert}",
                "Define TLS_KEY": f"Define TLS_KEY {setup.key}",
                "Define RUN_DIR": "Define RUN_DIR {dir}",
            },
        )
        with run_apache(conf) as server:
            yield stack_of(setup, server, https_port, app)


def matrix_account() -> contextlib.AbstractContextManager[Account]:
    """A hosting account with fcgigw, asgiref and the matrix apps, for mod_fcgid."""

    def copy_apps(root: Path) -> None:
        for module in ("testapps", "asgiapps", "matrixapps"):
            shutil.copy(APPS / f"{module}.py", root / "lib")

    return hosting_account(
        modules=["fcgigw.adapters.app_loader", "matrixapps"],
        paths=[APPS],
        packages="fcgigw.adapters.app_loader",
        populate=copy_apps,
    )


@contextlib.contextmanager
def apache_fcgid(setup: Setup) -> Iterator[Stack]:
    account = setup.account()
    run_dir = account.run_dir / setup.interface
    run_dir.mkdir()
    program = setup.spawned_app("apache-fcgid", account.python)
    readable_by_all(run_dir)  # www-data reaches mod_fcgid's sockets through it
    https_port = free_port()
    conf = example_config(
        EXAMPLES / "apache-fcgid.conf",
        {
            "Define HTTP_PORT": "Define HTTP_PORT {port}",
            "Define HTTPS_PORT": f"Define HTTPS_PORT {https_port}",
            "Define APP": f"Define APP {program}",
            "Define TLS_CERT": f"Define TLS_CERT {setup.cert}",
            "Define TLS_KEY": f"Define TLS_KEY {setup.key}",
            "Define RUN_DIR": f"Define RUN_DIR {run_dir}",
            "FcgidInitialEnv FCGIGW_ACCESS_LOG": "FcgidInitialEnv FCGIGW_ACCESS_LOG on\n"
            f"FcgidInitialEnv PYTHONPATH {account.lib}",
        },
    )
    with run_apache(conf) as server:
        yield stack_of(setup, server, https_port, None)


@contextlib.contextmanager
def lighttpd(setup: Setup) -> Iterator[Stack]:
    with fcgigw_for(setup, "lighttpd") as (app, _):
        https_port, tls_pem = free_port(), setup.pem()
        pythonpath = child_environment()["PYTHONPATH"]
        conf = example_config(
            EXAMPLES / "lighttpd.conf",
            {
                "var.http_port": "var.http_port = {port}",
                "var.https_port": f"var.https_port = {https_port}",
                "var.fcgigw_port": f"var.fcgigw_port = {tcp_port(app)}",
                "var.spawned_app": f'var.spawned_app = "{setup.spawned_app("lighttpd")}"',
                "var.run_dir": 'var.run_dir = "{dir}"',
                "var.tls_pem": f'var.tls_pem = "{tls_pem}"',
                '        "bin-environment"': '        "bin-environment" => '
                f'("FCGIGW_ACCESS_LOG" => "on", "PYTHONPATH" => "{pythonpath}"),',
            },
        )
        with run_lighttpd(conf) as server:
            yield stack_of(setup, server, https_port, app)


@contextlib.contextmanager
def h2o(setup: Setup) -> Iterator[Stack]:
    with fcgigw_for(setup, "h2o") as (app, _):
        https_port, spawned = free_port(), setup.spawned_app("h2o")
        conf = example_config(
            EXAMPLES / "h2o.conf",
            {
                "user:": "user: root" if AS_ROOT else "",
                "pid-file:": "pid-file: {dir}/h2o.pid",
                "listen: {": "listen: {host: 127.0.0.1, port: {port}}",
                "  port: 8443": f"  port: {https_port}",
                "    certificate-file:": f"    certificate-file: {setup.cert}",
                "    key-file:": f"    key-file: {setup.key}",
                "          port: 9000": f"          port: {tcp_port(app)}",
                "        fastcgi.spawn:": f'        fastcgi.spawn: "exec {spawned}"',
            },
        )
        # h2o passes its environment to what it spawns: PYTHONPATH reaches the spawned app.
        with run_h2o(conf, env=child_environment()) as server:
            yield stack_of(setup, server, https_port, app)


@contextlib.contextmanager
def caddy(setup: Setup) -> Iterator[Stack]:
    with fcgigw_for(setup, "caddy") as (app, socket_path):
        https_port = free_port()
        conf = example_config(
            EXAMPLES / "Caddyfile",
            {
                "http://127.0.0.1:8080": "http://127.0.0.1:{port} {",
                "https://127.0.0.1:8443": f"https://127.0.0.1:{https_port} {{",
                "\ttls ": f"\ttls {setup.cert} {setup.key}",
                "\t\treverse_proxy 127.0.0.1:9000": f"\t\treverse_proxy {app.address} {{",
                "\t\treverse_proxy unix/": f"\t\treverse_proxy unix/{socket_path} {{",
            },
        )
        with run_caddy(conf) as server:
            yield stack_of(setup, server, https_port, app)


@contextlib.contextmanager
def haproxy(setup: Setup) -> Iterator[Stack]:
    """HAProxy splits the path itself (path-info), so fcgigw runs without --root-path, as the
    README says."""
    with fcgigw_for(setup, "haproxy", root_path="") as (app, socket_path):
        https_port = free_port()
        conf = example_config(
            EXAMPLES / "haproxy.cfg",
            {
                "    bind 127.0.0.1:8080": "    bind 127.0.0.1:{port}",
                "    bind 127.0.0.1:8443": f"    bind 127.0.0.1:{https_port} ssl crt {setup.pem()}"
                " alpn h2,http/1.1",
                "    server fcgigw 127.0.0.1:": f"    server fcgigw {app.address} proto fcgi",
                "    server fcgigw unix@": f"    server fcgigw unix@{socket_path} proto fcgi",
            },
        )
        with run_haproxy(conf) as server:
            yield stack_of(setup, server, https_port, app)


@contextlib.contextmanager
def cgi_fcgi(setup: Setup) -> Iterator[Stack]:
    """No server: the test is the CGI host that runs examples/servers/cgi-fcgi.cgi. A body
    that cgi-fcgi ends short (its client left) is given up after CGI_FCGI_STALL_SECONDS."""
    stall = ("--body-stall-timeout-seconds", str(CGI_FCGI_STALL_SECONDS))
    with fcgigw_for(setup, "cgi-fcgi", *stall) as (app, socket_path):
        command = f"exec cgi-fcgi -bind -connect {socket_path}"
        program = setup.script(
            "cgi-fcgi.cgi", example_config(EXAMPLES / "cgi-fcgi.cgi", {"exec ": command})
        )
        log_path = setup.workdir / f"cgi-fcgi-{setup.interface}.log"
        # What mod_cgi gives a CGI program besides the request: PATH.
        yield Stack(None, None, log_path, setup.workdir, app, program, {"PATH": "/usr/bin:/bin"})


@dataclass(frozen=True)
class Server:
    start: Callable[[Setup], contextlib.AbstractContextManager[Stack]]
    binary: Callable[[], str | None]
    install: str  # the Debian packages that bring it
    modules: tuple[str, ...] = ()  # the server's modules it loads


SERVERS = {
    "nginx": Server(nginx, nginx_binary, "nginx-light"),
    "apache-proxy-fcgi": Server(apache_proxy_fcgi, apache_binary, "apache2"),
    "apache-fcgid": Server(
        apache_fcgid,
        apache_binary,
        "apache2 libapache2-mod-fcgid",
        ("/usr/lib/apache2/modules/mod_fcgid.so",),
    ),
    "lighttpd": Server(
        lighttpd,
        lighttpd_binary,
        "lighttpd lighttpd-mod-openssl",
        ("/usr/lib/lighttpd/mod_openssl.so",),
    ),
    "h2o": Server(h2o, h2o_binary, "h2o"),
    "caddy": Server(caddy, caddy_binary, "caddy"),
    "haproxy": Server(haproxy, haproxy_binary, "haproxy"),
    "cgi-fcgi": Server(cgi_fcgi, lambda: shutil.which("cgi-fcgi"), "libfcgi-bin"),
}


def missing(name: str) -> str | None:
    """Why ``name`` cannot run here, or None."""
    server = SERVERS[name]
    if server.binary() is None or not all(map(os.path.exists, server.modules)):
        return f"{name} is not installed (apt-get install {server.install}; .ci/run does)"
    return None


def tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl; .ci/run does)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
            "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:FALSE",
        ],
        capture_output=True,
        timeout=20,
        check=True,
    )  # fmt: skip
    return cert, key


class Stacks:
    """Starts each server's stack on first use and keeps it until the module ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.exit = contextlib.ExitStack()
        self.cert, self.key = tls_certificate(workdir)
        self.started: dict[tuple[str, str], Stack | str | Exception] = {}
        self._account: Account | None = None

    def account(self) -> Account:
        if self._account is None:
            self._account = self.exit.enter_context(matrix_account())
        return self._account

    def get(self, name: str, interface: str) -> Stack:
        """The stack, started now if needed. A server that cannot run here skips, and one
        that failed to start fails, every test that needs it, without trying again."""
        key = (name, interface)
        if key not in self.started:
            try:
                self.started[key] = missing(name) or self._start(name, interface)
            except pytest.skip.Exception as skipped:
                self.started[key] = skipped.msg
            except Exception as error:
                self.started[key] = error
                raise
        stack = self.started[key]
        if isinstance(stack, str):
            pytest.skip(stack)
        if isinstance(stack, Exception):
            pytest.fail(f"{name} ({interface}) did not start: {stack!r}")
        return stack

    def _start(self, name: str, interface: str) -> Stack:
        setup = Setup(interface, self.workdir, self.cert, self.key, self.account)
        return self.exit.enter_context(SERVERS[name].start(setup))

    def close(self) -> None:
        self.exit.close()
