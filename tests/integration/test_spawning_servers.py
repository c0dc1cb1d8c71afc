"""Web servers and launchers that start fcgigw themselves, with a listening socket on fd 0
(FastCGI §2.2): Apache mod_fcgid running the shipped shared-hosting dispatch.fcgi (Flask and
Django) with the shipped .htaccess, lighttpd bin-path, spawn-fcgi (Unix and TCP) and
cgi-fcgi -start; and the same dispatch.fcgi run as a CGI program from a shell.

Apache started as root runs dispatch.fcgi as www-data (``User www-data`` in the shipped
config, as on a real host). The ``site`` fixture is a hosting account (hosting.py) that
www-data can read: a web directory with .htaccess and dispatch.fcgi, the example apps, and a
"virtualenv" with fcgigw, Flask and Django. dispatch.fcgi's first line names an interpreter
www-data can run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hosting import Account, hosting_account, readable_by_all
from servers import (
    LOG_TIMEOUT_SECONDS,
    REPO,
    RunningProcess,
    apache_binary,
    child_environment,
    example_config,
    fcgigw_command,
    free_port,
    lighttpd_binary,
    nginx_binary,
    run_apache,
    run_lighttpd,
    run_nginx,
    short_tempdir,
    stop,
    wait_until_connectable,
)
from test_nginx_flask import http_request

from fcgigw.client import FastCGIClient, build_params
from fcgigw.client.cgi import parse_cgi_response

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples" / "shared-hosting"
TIMEOUT = 20
UPLOAD = b"0123456789abcdef" * 12800  # 200 KiB: past mod_fcgid's default FcgidMaxRequestLen
STATIC_FILE = b"served by the web server, not the app\n"


@dataclass
class Site(Account):
    """A hosting account with the example apps, and web directories made on demand."""

    def web_dir(self, app: str) -> Path:
        """A web directory holding the shipped .htaccess and ``app``'s dispatch.fcgi."""
        web = self.root / f"www-{app}"
        if not web.exists():
            web.mkdir()
            shutil.copy(EXAMPLES / ".htaccess", web / ".htaccess")
            (web / "static.txt").write_bytes(STATIC_FILE)
            app_dir = self.root / ("django_site" if app == "django" else "app")
            script = web / "dispatch.fcgi"
            script.write_text(
                example_config(
                    EXAMPLES / app / "dispatch.fcgi",
                    {"#!": f"#!{self.python}", "APP_DIR =": f'APP_DIR = "{app_dir}"'},
                )
            )
            script.chmod(0o755)
            readable_by_all(web)
        return web


def copy_example_apps(root: Path) -> None:
    (root / "app").mkdir()
    shutil.copy(REPO / "examples" / "flask_app.py", root / "app")
    shutil.copytree(
        REPO / "examples" / "django_site",
        root / "django_site",
        ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"),
    )


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with hosting_account(
        modules=["fcgigw", "flask_app", "mysite.wsgi"],
        paths=[REPO / "examples", REPO / "examples" / "django_site"],
        packages="fcgigw, flask, django",
        populate=copy_example_apps,
        env={"DJANGO_SETTINGS_MODULE": "mysite.settings"},
    ) as account:
        yield Site(account.root, account.python, account.lib, account.run_dir)


def json_body(
    server: RunningProcess,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, object]:
    status, _, response = http_request(server, method, path, body=body, headers=headers)
    assert status == 200, response
    result: dict[str, object] = json.loads(response)
    return result


def where(app: str, server: RunningProcess) -> tuple[object, object, object]:
    """(script name, path, absolute URL) as the app sees them for ``/where/?x=1``."""
    if app == "flask":
        seen = json_body(server, "/echo?x=1")
        return seen["script_root"], seen["path"], seen["url"]
    seen = json_body(server, "/where/?x=1")
    return seen["script_name"], seen["path"], seen["absolute_uri"]


# -- Apache mod_fcgid: the shipped apache-fcgid.conf, .htaccess and dispatch.fcgi ---------


def apache_config(site: Site, app: str, run_dir: Path) -> str:
    run_dir.mkdir(exist_ok=True)
    readable_by_all(run_dir)  # www-data reaches mod_fcgid's sockets through it
    return example_config(
        EXAMPLES / "apache-fcgid.conf",
        {
            "Define HTTP_PORT": "Define HTTP_PORT {port}",
            "Define WEB_DIR": f"Define WEB_DIR {site.web_dir(app)}",
            "Define RUN_DIR": f"Define RUN_DIR {run_dir}",
            "FcgidInitialEnv FCGIGW_ACCESS_LOG": "FcgidInitialEnv FCGIGW_ACCESS_LOG on\n"
            f"FcgidInitialEnv PYTHONPATH {site.lib}",
        },
    )


@pytest.fixture(scope="module", params=["flask", "django"])
def apache(request: pytest.FixtureRequest, site: Site) -> Iterator[tuple[str, RunningProcess]]:
    if apache_binary() is None:
        pytest.skip("apache2 is not installed (apt-get install apache2 libapache2-mod-fcgid)")
    if not Path("/usr/lib/apache2/modules/mod_fcgid.so").exists():
        pytest.skip("mod_fcgid is not installed (apt-get install libapache2-mod-fcgid)")
    app: str = request.param
    with run_apache(apache_config(site, app, site.run_dir / app)) as server:
        yield app, server


def test_mod_fcgid_mounts_the_app_at_the_web_directory(apache: tuple[str, RunningProcess]) -> None:
    """The .htaccess rewrite makes SCRIPT_NAME /dispatch.fcgi; dispatch.fcgi mounts the app
    at the directory, so its URLs are the ones the visitor used."""
    app, server = apache
    script_name, path, url = where(app, server)
    expected_path = "/echo" if app == "flask" else "/where/"
    assert (script_name, path) == ("", expected_path)
    assert url == f"http://{server.address}{expected_path}?x=1"


def test_mod_fcgid_leaves_real_files_to_apache(apache: tuple[str, RunningProcess]) -> None:
    _, server = apache
    assert http_request(server, "GET", "/static.txt")[::2] == (200, STATIC_FILE)
    assert http_request(server, "GET", "/.htaccess")[0] == 403


def test_mod_fcgid_takes_a_200_kib_upload(apache: tuple[str, RunningProcess]) -> None:
    """The shipped config raises FcgidMaxRequestLen (default 131072: this would be a 500)."""
    app, server = apache
    if app == "flask":
        seen = json_body(server, "/echo", method="POST", body=UPLOAD)
        assert seen["body_length"] == len(UPLOAD)
        return
    boundary = "fcgigwboundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + UPLOAD
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    seen = json_body(server, "/upload/", method="POST", body=form, headers=headers)
    assert seen["size"] == len(UPLOAD)


def test_mod_fcgid_spawns_one_fcgigw_on_fd0_and_keeps_it(
    apache: tuple[str, RunningProcess],
) -> None:
    app, server = apache
    for _ in range(3):
        where(app, server)
    server.wait_for_log("fcgigw.access", 3)
    log = server.log()
    assert log.count("fd 0 is a listening socket (unix:") == 1, log


def test_apache_shutdown_stops_the_spawned_fcgigw_cleanly(site: Site) -> None:
    if apache_binary() is None:
        pytest.skip("apache2 is not installed (apt-get install apache2 libapache2-mod-fcgid)")
    for attempt in range(APACHE_STOP_ATTEMPTS):
        with run_apache(apache_config(site, "flask", site.run_dir / f"stop{attempt}")) as server:
            where("flask", server)
            server.wait_for_log("fcgigw.access")
            server.process.send_signal(signal.SIGTERM)  # mod_fcgid then sends SIGTERM to the app
            if not apache_crashed_while_stopping(server):
                server.wait_for_log("fcgigw stopped")
                return
    pytest.fail(f"apache2 -X crashed (SIGSEGV) on SIGTERM {APACHE_STOP_ATTEMPTS} times in a row")


APACHE_STOP_ATTEMPTS = 3


def apache_crashed_while_stopping(server: RunningProcess) -> bool:
    """Whether ``apache2 -X`` died of SIGSEGV before the app logged its stop. Under load it
    sometimes does: in one-process mode prefork's SIGTERM handler destroys its memory pools
    inside the signal handler, which is not async-signal-safe (an Apache bug, seen in CI about
    once in 25 stops with both cores busy). Then mod_fcgid never signals the app, so there is
    nothing of ours to check, and the test starts Apache again."""
    deadline = time.monotonic() + LOG_TIMEOUT_SECONDS
    while "fcgigw stopped" not in server.log() and time.monotonic() < deadline:
        if server.process.poll() == -signal.SIGSEGV:
            return "fcgigw stopped" not in server.log()
        time.sleep(0.01)
    return False


def test_mod_cgi_runs_the_same_dispatch_fcgi_once_per_request(site: Site) -> None:
    """With mod_cgi instead of mod_fcgid (the .htaccess says cgi-script), the same script
    answers as a CGI program: the CGI fallback."""
    if apache_binary() is None:
        pytest.skip("apache2 is not installed (apt-get install apache2)")
    web = site.web_dir("flask")
    cgi_web = site.root / "www-cgi"
    shutil.copytree(web, cgi_web)
    (cgi_web / ".htaccess").write_text(
        example_config(EXAMPLES / ".htaccess", {"AddHandler": "AddHandler cgi-script .fcgi"})
    )
    readable_by_all(cgi_web)
    conf = MOD_CGI_CONF.replace("WEB_DIR", str(cgi_web)).replace("LIB", str(site.lib))
    with run_apache(conf) as server:
        assert where("flask", server)[:2] == ("", "/echo")
        seen = json_body(server, "/echo", method="POST", body=UPLOAD)
        assert seen["body_length"] == len(UPLOAD)


MOD_CGI_CONF = """
ServerRoot /etc/apache2
ServerName localhost
Listen 127.0.0.1:{port}
PidFile {dir}/apache2.pid
ErrorLog /dev/stderr
LogLevel warn
TypesConfig /dev/null
User www-data
Group www-data
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule rewrite_module /usr/lib/apache2/modules/mod_rewrite.so
LoadModule env_module /usr/lib/apache2/modules/mod_env.so
LoadModule cgi_module /usr/lib/apache2/modules/mod_cgi.so
SetEnv PYTHONPATH LIB
DocumentRoot WEB_DIR
<Directory WEB_DIR>
    Options FollowSymLinks
    AllowOverride FileInfo Options=ExecCGI
    Require all granted
</Directory>
"""


def test_dispatch_fcgi_from_a_shell_answers_one_cgi_request(site: Site) -> None:
    script = site.web_dir("flask") / "dispatch.fcgi"
    cgi = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/dispatch.fcgi",
        "PATH_INFO": "/echo",
        "QUERY_STRING": "x=1",
        "CONTENT_LENGTH": "7",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "SERVER_NAME": "example.test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.test",
    }
    result = subprocess.run(
        [str(script)],
        input=b"a=1&b=2",
        env=site.environment() | cgi,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    status, _, _, body = parse_cgi_response(result.stdout)
    seen = json.loads(body)
    assert status == 200
    assert (seen["script_root"], seen["path"]) == ("", "/echo")
    assert seen["form"] == {"a": ["1"], "b": ["2"]}
    assert seen["url"] == "http://example.test/echo?x=1"


# -- lighttpd bin-path: the shipped lighttpd.conf ------------------------------------------


def test_lighttpd_bin_path_spawns_dispatch_fcgi(site: Site) -> None:
    if lighttpd_binary() is None:
        pytest.skip("lighttpd is not installed (apt-get install lighttpd)")
    conf = example_config(
        EXAMPLES / "lighttpd.conf",
        {
            "var.http_port": "var.http_port = {port}",
            "var.web_dir": f'var.web_dir = "{site.web_dir("flask")}"',
            "var.run_dir": 'var.run_dir = "{dir}"',
            '        "bin-environment"': '        "bin-environment" => '
            f'("FCGIGW_ACCESS_LOG" => "on", "PYTHONPATH" => "{site.lib}"),',
        },
    )
    with run_lighttpd(conf) as server:
        script_name, path, url = where("flask", server)
        assert (script_name, path, url) == ("", "/echo", f"http://{server.address}/echo?x=1")
        server.wait_for_log("fd 0 is a listening socket (unix:")
        server.process.send_signal(signal.SIGTERM)  # lighttpd then sends SIGTERM to the app
        server.wait_for_log("fcgigw stopped")  # lighttpd's own exit status varies (1 or 0)


# -- spawn-fcgi and cgi-fcgi: the launchers from libfcgi and lighttpd's project -----------


def launcher(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {package}; .ci/run installs it)")
    return path


@contextlib.contextmanager
def spawn_fcgi(*options: str, app: str, environ: dict[str, str]) -> Iterator[RunningProcess]:
    """``spawn-fcgi -n OPTIONS -- python -m fcgigw APP``: with -n it execs fcgigw itself
    (same pid), fd 0 the socket it made, and no --bind."""
    binary = launcher("spawn-fcgi", "spawn-fcgi")
    workdir = Path(short_tempdir())
    log_path = workdir / "fcgigw.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "-n", *options, "--", *fcgigw_command("--access-log", app)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=REPO,
        )
    address = f"unix:{options[options.index('-s') + 1]}" if "-s" in options else ""
    if "-p" in options:
        address = f"127.0.0.1:{options[options.index('-p') + 1]}"
    try:
        wait_until_connectable(address, process)
        yield RunningProcess(process, address, log_path)
    finally:
        stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def test_spawn_fcgi_unix_socket_behind_nginx() -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    path = f"{short_tempdir()}/app.sock"
    with spawn_fcgi(
        "-s", path, "-M", "0600", app="testapps:router", environ=child_environment()
    ) as app:
        with run_nginx(app.address) as nginx:
            status, _, body = http_request(nginx, "GET", "/hello")
        assert (status, body) == (200, b"Hello, world!")
        app.wait_for_log(f"fd 0 is a listening socket ({app.address})")
        app.process.send_signal(signal.SIGTERM)
        assert app.process.wait(TIMEOUT) == 0


def test_spawn_fcgi_tcp_socket_with_fcgi_web_server_addrs() -> None:
    """-p gives an AF_INET socket on fd 0; FCGI_WEB_SERVER_ADDRS (§3.2) still applies."""
    environ = child_environment() | {"FCGI_WEB_SERVER_ADDRS": "127.0.0.1"}
    options = ("-a", "127.0.0.1", "-p", str(free_port()))
    with spawn_fcgi(*options, app="asgiapps:router", environ=environ) as app:
        with FastCGIClient(app.address, timeout=TIMEOUT) as client:
            response = client.request(build_params("GET", "/hello"))
        assert (response.status, response.body) == (200, b"Hello, world!")
        app.process.send_signal(signal.SIGTERM)
        assert app.process.wait(TIMEOUT) == 0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def exited(pid: int) -> bool:
    """True once ``pid`` is gone or a zombie (an orphan's parent may be slow to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_cgi_fcgi_start_then_bind_connect() -> None:
    """cgi-fcgi -start creates the socket, starts the program with fds 1 and 2 closed and
    exits; the program runs on its own until killed. cgi-fcgi -bind is then the client."""
    cgi_fcgi = launcher("cgi-fcgi", "libfcgi-bin")
    workdir = Path(short_tempdir())
    socket_path, pid_file, wrapper = workdir / "app.sock", workdir / "pid", workdir / "app.sh"
    # cgi-fcgi execs the program without arguments: a wrapper script gives them.
    command = " ".join(fcgigw_command("testapps:router"))
    wrapper.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec {command}\n")
    wrapper.chmod(0o755)
    subprocess.run(
        [cgi_fcgi, "-start", "-connect", str(socket_path), str(wrapper), "1"],
        env=child_environment(),
        cwd=REPO,
        timeout=TIMEOUT,
        check=True,
    )
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", "the pid file")
    pid = int(pid_file.read_text())
    try:
        request = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/hello"}
        result = subprocess.run(
            [cgi_fcgi, "-bind", "-connect", str(socket_path)],
            env=request,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert parse_cgi_response(result.stdout)[::3] == (200, b"Hello, world!")
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: exited(pid), f"fcgigw (pid {pid}) to exit on SIGTERM")
        shutil.rmtree(workdir, ignore_errors=True)
