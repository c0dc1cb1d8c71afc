"""The README's web server snippets run as written. Each fenced block marked
``<!-- web-server: NAME config -->`` starts the real server NAME on loopback, in front of fcgigw
started from the block marked ``<!-- web-server: NAME fcgigw -->``; then requests go through
it. Only ports, socket paths and the app change, each by a literal substitution that must
still find its text in the snippet. What a Debian host holds outside the snippet (nginx's main
context, HAProxy's global and defaults sections, Apache's apache2.conf and its enabled modules)
is written here, the way Debian writes it.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from matrix_clients import TIMEOUT, HttpClient, Response
from servers import (
    REPO,
    RunningProcess,
    apache_binary,
    free_port,
    haproxy_binary,
    nginx_binary,
    run_apache,
    run_fcgigw,
    run_haproxy,
    run_nginx_config,
    short_tempdir,
)

pytestmark = pytest.mark.integration

README = REPO / "README.md"
MARKER = re.compile(
    r"^<!-- web-server: (?P<server>[\w-]+) (?P<part>config|fcgigw) -->\n"
    r"```[\w-]*\n(?P<text>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
#: The app behind every snippet: testapps' router echoes what it got at /echo.
APP = "testapps:router"
AS_ROOT = os.geteuid() == 0
UPLOAD = hashlib.sha256(b"readme").digest() * (5 * 1024 * 1024 // 32)  # 5 MiB


def readme_snippets() -> dict[tuple[str, str], str]:
    """(server, "config" or "fcgigw") -> the text of the block marked so."""
    found: dict[tuple[str, str], str] = {}
    for match in MARKER.finditer(README.read_text()):
        key = (match["server"], match["part"])
        assert key not in found, f"two README blocks are marked {key}"
        found[key] = match["text"]
    return found


SNIPPETS = readme_snippets()


def substituted(text: str, values: dict[str, str]) -> str:
    """``text`` with each key of ``values`` replaced; a key that is gone fails the test, so
    a changed snippet is never run half-adapted."""
    for old, new in values.items():
        assert old in text, f"{old!r} is no longer in the README snippet:\n{text}"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def readme_fcgigw(server: str, values: dict[str, str]) -> Iterator[RunningProcess]:
    """fcgigw started from the README's command for ``server``: ``values`` substituted, and
    the app (``myapp:app``) replaced by APP."""
    command = substituted(SNIPPETS[(server, "fcgigw")], {**values, "myapp:app": APP})
    program, *args = shlex.split(command)
    assert program == "fcgigw", command
    at = args.index("--bind")
    address = args[at + 1]
    del args[at : at + 2]
    with run_fcgigw(*args, address=address) as app:
        yield app


def echo(response: Response) -> dict[str, object]:
    assert response.status == 200, response
    data: dict[str, object] = json.loads(response.body)
    return data


def upload_arrives_whole(client: HttpClient, target: str, *, chunked: bool = False) -> None:
    seen = echo(client.request("POST", target, body=UPLOAD, chunked=chunked))
    assert (seen["body_length"], seen["body_sha256"]) == (
        len(UPLOAD),
        hashlib.sha256(UPLOAD).hexdigest(),
    )


@contextlib.contextmanager
def open_directory() -> Iterator[Path]:
    """A temporary directory the web server's workers (www-data) can enter: the socket and
    nginx's temporary files go there."""
    directory = Path(short_tempdir())
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- nginx ----------------------------------------------------------------------------------


def nginx_main(snippet: str, directory: Path) -> str:
    """Debian's /etc/nginx/nginx.conf around the snippet (which goes in sites-enabled/, in
    the http block): workers as www-data when started as root, as Debian does."""
    temp = "\n".join(
        f"    {kind}_temp_path {directory}/{kind};"
        for kind in ("client_body", "fastcgi", "proxy", "uwsgi", "scgi")
    )
    user = "user www-data;\n" if AS_ROOT else ""
    return (
        f"{user}worker_processes 1;\ndaemon off;\npid {{dir}}/nginx.pid;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n{temp}\n"
        f"{snippet}}}\n"
    )


def nginx_values(directory: Path) -> dict[str, str]:
    """As root, the command as it is; otherwise fcgigw cannot give the socket to www-data,
    and nginx's workers run as this user: the socket goes to this user's group."""
    socket_group = "www-data" if AS_ROOT else grp.getgrgid(os.getegid()).gr_name
    return {"/run/myapp.sock": f"{directory}/myapp.sock", "www-data": socket_group}


@contextlib.contextmanager
def nginx_from_readme(
    fcgigw_values: Callable[[Path], dict[str, str]],
) -> Iterator[RunningProcess]:
    """nginx from the README's snippet in front of fcgigw from its command (with
    ``fcgigw_values(directory)`` substituted)."""
    with open_directory() as directory, readme_fcgigw("nginx", fcgigw_values(directory)):
        snippet = substituted(
            SNIPPETS[("nginx", "config")],
            {"/run/myapp.sock": f"{directory}/myapp.sock", "listen 80;": "listen {port};"},
        )
        with run_nginx_config(nginx_main(snippet, directory)) as server:
            yield server


def nginx_serves(address: str) -> None:
    with contextlib.closing(HttpClient(address, timeout=TIMEOUT)) as client:
        seen = echo(client.request("GET", "/echo/readme?x=1"))
        assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("", "/echo/readme")
        upload_arrives_whole(client, "/echo")  # over 1 MiB: client_max_body_size


@pytest.mark.skipif(
    not AS_ROOT, reason="needs root: only then do nginx's workers run as another user"
)
def test_nginx_cannot_reach_a_socket_without_the_group() -> None:
    """Why the README's command has --socket-group: without it, the socket is root's, and
    nginx's workers (www-data) get 502, with Permission denied in the error log."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does)")

    def without_group(directory: Path) -> dict[str, str]:
        return {" --socket-group www-data": "", "/run/myapp.sock": f"{directory}/myapp.sock"}

    with nginx_from_readme(without_group) as nginx:
        with contextlib.closing(HttpClient(nginx.address, timeout=TIMEOUT)) as client:
            assert client.request("GET", "/echo/readme").status == 502
        nginx.wait_for_log("(13: Permission denied)")


# -- HAProxy --------------------------------------------------------------------------------

#: Debian's /etc/haproxy/haproxy.cfg before the part the README adds: its global section but
#: for the log target, chroot, user and daemon, and its defaults section.
HAPROXY_DEBIAN = """\
global
    log stderr format raw local0 info

defaults
    log global
    mode http
    option httplog
    option dontlognull
    timeout connect 5000
    timeout client 50000
    timeout server 50000

"""


def haproxy_serves(address: str) -> None:
    with contextlib.closing(HttpClient(address, timeout=TIMEOUT)) as client:
        credentials = "Basic YWxpY2U6c2VjcmV0"
        response = client.request("GET", "/app/echo?x=1", [("Authorization", credentials)])
        seen = echo(response)
        assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/echo")
        assert seen["HTTP_AUTHORIZATION"] == credentials  # pass-header Authorization
        upload_arrives_whole(client, "/app/echo")


@contextlib.contextmanager
def haproxy_from_readme() -> Iterator[str]:
    fcgigw_address = f"127.0.0.1:{free_port()}"
    with readme_fcgigw("haproxy", {"127.0.0.1:9000": fcgigw_address}):
        snippet = substituted(
            SNIPPETS[("haproxy", "config")],
            {"bind :80": "bind 127.0.0.1:{port}", "127.0.0.1:9000": fcgigw_address},
        )
        with run_haproxy(HAPROXY_DEBIAN + snippet) as server:
            yield server.address


# -- Apache mod_proxy_fcgi -------------------------------------------------------------------

#: Debian's apache2.conf and the modules the README's snippet needs (mod_env and authz_core are
#: on by default, a2enmod proxy_fcgi brings proxy); the snippet goes in sites-enabled/.
APACHE_DEBIAN = """\
ServerRoot /etc/apache2
ServerName localhost
PidFile {dir}/apache2.pid
ErrorLog /dev/stderr
LogLevel warn
Listen 127.0.0.1:{port}
"""
APACHE_MODULES = ("mpm_event", "authz_core", "env", "proxy", "proxy_fcgi")


def apache_serves(address: str) -> None:
    """Through the snippet a chunked body arrives with its CONTENT_LENGTH (proxy-sendcl), so
    an app that reads CONTENT_LENGTH bytes reads all of it; Authorization passes (CGIPassAuth)."""
    with contextlib.closing(HttpClient(address, timeout=TIMEOUT)) as client:
        credentials = "Basic YWxpY2U6c2VjcmV0"
        response = client.request("GET", "/echo/readme?x=1", [("Authorization", credentials)])
        seen = echo(response)
        assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("", "/echo/readme")
        assert seen["HTTP_AUTHORIZATION"] == credentials
        seen = echo(client.request("POST", "/echo", body=UPLOAD, chunked=True))
        assert seen["CONTENT_LENGTH"] == str(len(UPLOAD))
        assert seen["body_sha256"] == hashlib.sha256(UPLOAD).hexdigest()


@contextlib.contextmanager
def apache_from_readme() -> Iterator[str]:
    fcgigw_address = f"127.0.0.1:{free_port()}"
    with readme_fcgigw("apache-proxy-fcgi", {"127.0.0.1:9000": fcgigw_address}):
        snippet = substituted(
            SNIPPETS[("apache-proxy-fcgi", "config")],
            {"<VirtualHost *:80>": "<VirtualHost *:{port}>", "127.0.0.1:9000": fcgigw_address},
        )
        modules = "".join(
            f"LoadModule {name}_module /usr/lib/apache2/modules/mod_{name}.so\n"
            for name in APACHE_MODULES
        )
        with run_apache(APACHE_DEBIAN + modules + snippet) as server:
            yield server.address


# -- every marked snippet -------------------------------------------------------------------


@contextlib.contextmanager
def nginx_stack() -> Iterator[str]:
    with nginx_from_readme(nginx_values) as nginx:
        yield nginx.address


#: server -> (how to start it from its snippets, what to check through it, its binary, the
#: Debian packages that bring it)
RUNNERS: dict[
    str,
    tuple[
        Callable[[], contextlib.AbstractContextManager[str]],
        Callable[[str], None],
        Callable[[], str | None],
        str,
    ],
] = {
    "nginx": (nginx_stack, nginx_serves, nginx_binary, "nginx-light"),
    "haproxy": (haproxy_from_readme, haproxy_serves, haproxy_binary, "haproxy"),
    "apache-proxy-fcgi": (apache_from_readme, apache_serves, apache_binary, "apache2"),
}


def test_every_marked_snippet_is_run() -> None:
    markers = README.read_text().count("<!-- web-server:")
    assert markers == len(SNIPPETS), "a web-server marker is not right before a fenced block"
    assert {server for server, _ in SNIPPETS} == set(RUNNERS)
    assert set(SNIPPETS) == {(server, part) for server in RUNNERS for part in ("config", "fcgigw")}


@pytest.mark.parametrize("server", sorted(RUNNERS))
def test_readme_snippet_serves_the_app(server: str) -> None:
    start, check, binary, packages = RUNNERS[server]
    if binary() is None:
        pytest.skip(f"{server} is not installed (apt-get install {packages}; .ci/run does)")
    with start() as address:
        check(address)
