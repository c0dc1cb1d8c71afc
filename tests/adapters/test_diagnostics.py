"""The diagnostics page: which server sent the request, what looks misconfigured, escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_params import (
    apache_proxy_fcgi_chunked,
    at_mount_point,
    caddy_chunked,
    cgi_fcgi,
    h2o_tls,
    lighttpd,
    nginx,
)

from fcgigw.adapters.params import wsgi_environ
from fcgigw.diagnostics import SERVER_SECTIONS, app, detect_server, warnings


def environ_for(params: list[tuple[bytes, bytes]], query: str = "") -> dict[str, Any]:
    environ = wsgi_environ(params)
    environ["fcgi.params"] = tuple(params)
    environ["QUERY_STRING"] = query
    return environ


def call(environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    seen: list[Any] = []
    body = b"".join(app(environ, lambda status, headers: seen.append((status, headers))))
    return seen[0][0], dict(seen[0][1]), body


@pytest.mark.parametrize(
    ("params", "server"),
    [
        (nginx(), "nginx"),
        ([*apache_proxy_fcgi_chunked(), (b"SERVER_SOFTWARE", b"Apache/2.4")], "apache-proxy-fcgi"),
        ([*lighttpd(), (b"SERVER_SOFTWARE", b"lighttpd/1.4.69")], "lighttpd"),
        ([*h2o_tls(), (b"SERVER_SOFTWARE", b"h2o/2.2.5")], "h2o"),
        ([*caddy_chunked(), (b"DOCUMENT_URI", b"")], "caddy"),
        (cgi_fcgi(), "cgi-fcgi"),
        ([(b"REQUEST_METHOD", b"GET")], None),
    ],
)
def test_detect_server(params: list[tuple[bytes, bytes]], server: str | None) -> None:
    assert detect_server(params) == server


def test_warnings_for_stock_nginx_without_root_path() -> None:
    params = nginx()
    found = warnings(params, wsgi_environ(params))
    assert any("--root-path" in w for w in found)
    assert any("HTTP_PROXY" in w for w in found)
    assert any("HTTP_HOST has no port" in w for w in found)


def test_warnings_for_lighttpd_trailing_slash_and_environment_leaks() -> None:
    slash = [(b"SCRIPT_NAME", b"/slash/foo"), (b"PATH_INFO", b"/bar")]
    assert any("trailing slash" in w for w in warnings(slash, wsgi_environ(slash)))
    assert any("whole environment" in w for w in warnings(cgi_fcgi(), wsgi_environ(cgi_fcgi())))


def test_a_mount_point_without_path_info_points_haproxy_users_at_path_info() -> None:
    """HAProxy without path-info sends every URL as its path-info sends the mount point."""
    params = at_mount_point("haproxy")
    found = warnings(params, wsgi_environ(params))
    assert any("path-info ^()(/.*)$" in w for w in found)
    params = at_mount_point("nginx")
    assert not any("path-info" in w for w in warnings(params, wsgi_environ(params)))


def test_apache_without_authorization_is_pointed_at_cgipassauth() -> None:
    params = apache_proxy_fcgi_chunked()
    assert any("CGIPassAuth On" in w for w in warnings(params, wsgi_environ(params)))


def test_a_correct_setup_has_no_warnings() -> None:
    params = [*lighttpd(), (b"HTTP_HOST", b"example.test:8080")]
    assert warnings(params, wsgi_environ(params)) == []


def test_page_escapes_everything_the_server_sent() -> None:
    params = [*nginx(), (b"HTTP_X_EVIL", b"<script>alert(1)</script>")]
    status, headers, body = call(environ_for(params))
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/html")
    assert b"<script>" not in body
    assert b"&lt;script&gt;" in body
    assert int(headers["Content-Length"]) == len(body)


def test_json_format_has_params_in_order_with_repeats() -> None:
    _, headers, body = call(environ_for(nginx(), "format=json"))
    data = json.loads(body)
    assert headers["Content-Type"] == "application/json"
    assert data["server"] == "nginx"
    assert [p for p in data["params"] if p[0] == "HTTP_X_DUP"] == [
        ["HTTP_X_DUP", "a"],
        ["HTTP_X_DUP", "b"],
    ]
    assert data["derived"]["PATH_INFO"] == "/app/foo/bar"


README = Path(__file__).resolve().parent.parent.parent / "README.md"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation but ``-`` and ``_``
    dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def readme_anchors() -> set[str]:
    return {
        github_anchor(line.lstrip("#"))
        for line in README.read_text().splitlines()
        if line.startswith("#")
    }


def test_every_server_section_is_a_heading_of_the_readme() -> None:
    anchors = readme_anchors()
    assert "web-servers" in anchors
    assert set(SERVER_SECTIONS.values()) <= anchors


@pytest.mark.parametrize(
    ("params", "section"),
    [
        (nginx(), "nginx"),
        (apache_proxy_fcgi_chunked(), "apache-mod_proxy_fcgi"),
        ([*lighttpd(), (b"SERVER_SOFTWARE", b"lighttpd/1.4.69")], "lighttpd"),
        ([(b"REQUEST_METHOD", b"GET")], "web-servers"),
    ],
)
def test_page_points_at_the_readme_section_of_the_server(
    params: list[tuple[bytes, bytes]], section: str
) -> None:
    _, _, body = call(environ_for(params, "format=json"))
    assert json.loads(body)["docs"] == f"README.md#{section}"
    _, _, page = call(environ_for(params))
    assert f'<a href="README.md#{section}">'.encode() in page


def test_apache_sends_its_path_which_is_no_environment_leak() -> None:
    """Apache adds its own PATH to the params (mod_proxy_fcgi and mod_fcgid); only the rest
    of a shell's environment (HOME…) shows that cgi-fcgi forwarded all of it."""
    params = [*apache_proxy_fcgi_chunked(), (b"PATH", b"/usr/sbin:/usr/bin:/sbin:/bin")]
    assert not any("whole environment" in w for w in warnings(params, wsgi_environ(params)))
