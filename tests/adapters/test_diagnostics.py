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

from fcgigw import diagnostics, readme
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


def test_warnings_for_stock_nginx() -> None:
    params = nginx()
    found = warnings(params, wsgi_environ(params))
    assert any("HTTP_PROXY" in w for w in found)
    assert any("HTTP_HOST has no port" in w for w in found)


@pytest.mark.parametrize("path", [b"/", b"/app/foo/bar"])
def test_stock_nginx_shows_no_mount_warning_as_it_cannot_tell_the_mount(path: bytes) -> None:
    """nginx at location / and at location /app/ send the same params: a warning would be
    wrong for every app at the root. The page says where fcgigw takes the app to be."""
    params = [(b"SCRIPT_NAME", path), (b"REQUEST_URI", path), (b"SERVER_SOFTWARE", b"nginx/1")]
    assert not any("mount" in w for w in warnings(params, wsgi_environ(params)))
    _, _, page = call(environ_for(params))
    assert b"fcgigw takes the app to be mounted at the root of the site" in page
    assert b"--root-path /app" in page


def proxy_pass(script_name: bytes, backend_path: bytes) -> list[tuple[bytes, bytes]]:
    """Apache ``ProxyPass PREFIX fcgi://127.0.0.1:9000/`` (web-servers.md §1, §4)."""
    target = b"proxy:fcgi://127.0.0.1:9000" + backend_path
    return [(b"SCRIPT_NAME", script_name), (b"SCRIPT_FILENAME", target)]


@pytest.mark.parametrize(
    ("params", "root_path", "warning"),
    [
        (proxy_pass(b"/app/foo/b r", b"/foo/b%20r"), "", "--root-path /app,"),
        (proxy_pass(b"/app/", b"/"), "", "--root-path /app,"),
        (proxy_pass(b"/app/foo", b"/foo"), "/app", None),
        (proxy_pass(b"/rootpath/x", b"/rootpath/x"), "", None),
        (proxy_pass(b"/app/x", b"/app/x"), "/app", "start fcgigw without --root-path"),
        (proxy_pass(b"/app/foo", b"/other"), "", None),  # a backend path of its own: unknown
        ([*proxy_pass(b"/sh", b"/DOCROOT/sh"), (b"PATH_INFO", b"/foo")], "", None),  # SetHandler
    ],
)
def test_apache_proxy_pass_shows_its_mount_and_a_wrong_one_is_a_warning(
    params: list[tuple[bytes, bytes]], root_path: str, warning: str | None
) -> None:
    found = [w for w in warnings(params, wsgi_environ(params, root_path)) if "mount" in w]
    if warning is None:
        assert found == []
    else:
        assert len(found) == 1
        assert warning in found[0]


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


def test_every_server_section_is_a_heading_of_the_readme() -> None:
    anchors = set(readme.sections(README.read_text()))
    assert "web-servers" in anchors
    assert set(SERVER_SECTIONS.values()) <= anchors


@pytest.mark.parametrize(
    ("params", "section", "excerpt"),
    [
        (nginx(), "nginx", b"<code>fastcgi_keep_conn on;</code>"),
        (apache_proxy_fcgi_chunked(), "apache-mod_proxy_fcgi", b"<code>CGIPassAuth On</code>"),
        (
            [*lighttpd(), (b"SERVER_SOFTWARE", b"lighttpd/1.4.69")],
            "lighttpd",
            b"<code>server.stream-response-body = 2</code>",
        ),
        ([(b"REQUEST_METHOD", b"GET")], "web-servers", b"<summary>Apache mod_fcgid</summary>"),
    ],
)
def test_page_shows_the_readme_section_of_the_server(
    params: list[tuple[bytes, bytes]], section: str, excerpt: bytes
) -> None:
    _, _, body = call(environ_for(params, "format=json"))
    assert json.loads(body)["docs"] == f"README.md#{section}"
    _, _, page = call(environ_for(params))
    assert excerpt in page


def page_links(page: str) -> tuple[list[str], set[str]]:
    """Every href of ``page`` and every id in it."""
    return re.findall(r'href="([^"]*)"', page), set(re.findall(r'id="([^"]*)"', page))


@pytest.mark.parametrize(
    "params",
    [nginx(), apache_proxy_fcgi_chunked(), [(b"REQUEST_METHOD", b"GET")], cgi_fcgi()],
    ids=["nginx", "apache", "unknown", "cgi-fcgi"],
)
def test_every_link_of_the_page_goes_somewhere(params: list[tuple[bytes, bytes]]) -> None:
    """No link relative to the page's own URL (it would be the page again): each is an
    anchor on the page, absolute, or the empty icon that saves a /favicon.ico request."""
    _, _, body = call(environ_for(params))
    hrefs, ids = page_links(body.decode())
    assert len(hrefs) > 4
    for href in hrefs:
        if href.startswith("#"):
            assert href[1:] in ids
        else:
            assert href == "data:," or href.startswith(("https://", "http://")), href


def test_page_falls_back_to_naming_the_section_without_a_readme(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fcgigw run from a source tree that was never installed has no README in its metadata."""
    monkeypatch.setattr(diagnostics, "guidance_html", lambda section: None)
    _, _, page = call(environ_for(nginx()))
    assert b"fcgigw's README explains it, in <code>README.md#nginx</code>" in page


def test_without_a_readme_in_the_metadata_there_is_no_guidance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readme, "readme_text", lambda: None)
    readme.guidance_html.cache_clear()
    try:
        assert readme.guidance_html("nginx") is None
    finally:
        readme.guidance_html.cache_clear()


def test_readme_markdown_is_escaped_and_links_stay_on_the_page() -> None:
    """README links point into the README, not at this page: they become plain text."""
    lines = [
        "A <b> and **bold `<code>`** with [a section](#somewhere), [a site](https://a.test/x).",
        "",
        "- one item",
        "  continued",
        "- two",
        "",
        "3. three",
        "",
        "```sh",
        "fcgigw <APP>",
        "",
        "```",
    ]
    assert readme.render(lines) == (
        "<p>A &lt;b&gt; and <strong>bold <code>&lt;code&gt;</code></strong> with a section, "
        '<a href="https://a.test/x">a site</a>.</p>\n'
        "<ul><li>one item continued</li><li>two</li></ul>\n"
        '<ol start="3"><li>three</li></ol>\n'
        "<pre><code>fcgigw &lt;APP&gt;\n</code></pre>"
    )


def test_apache_sends_its_path_which_is_no_environment_leak() -> None:
    """Apache adds its own PATH to the params (mod_proxy_fcgi and mod_fcgid); only the rest
    of a shell's environment (HOME…) shows that cgi-fcgi forwarded all of it."""
    params = [*apache_proxy_fcgi_chunked(), (b"PATH", b"/usr/sbin:/usr/bin:/sbin:/bin")]
    assert not any("whole environment" in w for w in warnings(params, wsgi_environ(params)))
