"""The params translator against what each real server sends (web-servers.md §1, §4, §5, §7).

Request: GET /app/foo/bar?x=1&y=a%20b&z=%2F&u=%C3%A9 with the app mounted at /app.
"""

from __future__ import annotations

import asyncio
import random
import wsgiref.util

import pytest
from memory_channels import AsyncMemoryChannel, MemoryChannel

from fcgigw.adapters import params as params_module
from fcgigw.adapters.asgi import build_scope, run_asgi
from fcgigw.adapters.params import (
    SCOPE_PARAMS,
    address_pair,
    asgi_params,
    asgi_path,
    content_length,
    http_version,
    raw_path,
    split_host,
    split_script_path,
    url_scheme,
    wsgi_environ,
)
from fcgigw.adapters.wsgi import run_wsgi

QUERY = b"x=1&y=a%20b&z=%2F&u=%C3%A9"
URI = b"/app/foo/bar?" + QUERY
Pairs = list[tuple[bytes, bytes]]


def common(**overrides: bytes) -> Pairs:
    base = {
        b"QUERY_STRING": QUERY,
        b"REQUEST_METHOD": b"GET",
        b"REQUEST_URI": URI,
        b"SERVER_PROTOCOL": b"HTTP/1.1",
        b"REMOTE_ADDR": b"127.0.0.1",
        b"REMOTE_PORT": b"51234",
        b"SERVER_ADDR": b"127.0.0.1",
        b"SERVER_PORT": b"8080",
        b"SERVER_NAME": b"localhost",
        b"GATEWAY_INTERFACE": b"CGI/1.1",
    }
    base.update({k.encode(): v for k, v in overrides.items()})
    return [(k, v) for k, v in base.items() if v is not None]


def nginx() -> Pairs:
    """Debian's stock fastcgi_params: whole path in SCRIPT_NAME, CONTENT_LENGTH "", $host."""
    return [
        *common(),
        (b"CONTENT_TYPE", b""),
        (b"CONTENT_LENGTH", b""),
        (b"SCRIPT_NAME", b"/app/foo/bar"),
        (b"DOCUMENT_URI", b"/app/foo/bar"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REDIRECT_STATUS", b"200"),
        (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
        (b"HTTP_HOST", b"example.test"),
        (b"HTTP_X_DUP", b"a"),
        (b"HTTP_X_DUP", b"b"),
        (b"HTTP_COOKIE", b"a=1"),
        (b"HTTP_COOKIE", b"b=2"),
        (b"HTTP_PROXY", b"evil"),
    ]


def apache_proxy_fcgi_chunked() -> Pairs:
    return [
        *common(REQUEST_METHOD=b"POST"),
        (b"SCRIPT_NAME", b"/app/foo/bar"),
        (b"SCRIPT_FILENAME", b"proxy:fcgi://127.0.0.1:9000/foo/bar"),
        (b"HTTP_TRANSFER_ENCODING", b"chunked"),
        (b"HTTP_HOST", b"example.test:8080"),
        (b"HTTP_COOKIE", b"a=1, b=2"),
    ]


def mod_fcgid() -> Pairs:
    return [
        *common(),
        (b"SCRIPT_NAME", b"/app"),
        (b"PATH_INFO", b"/foo/bar"),
        (b"CONTENT_LENGTH", b"0"),
        (b"HTTP_CONNECTION", b"close"),
    ]


def lighttpd() -> Pairs:
    return [*common(), (b"SCRIPT_NAME", b"/app"), (b"PATH_INFO", b"/foo/bar")]


def h2o_tls() -> Pairs:
    return [
        *common(SERVER_NAME=b"default"),
        (b"SCRIPT_NAME", b""),
        (b"PATH_INFO", b"/app/foo/bar"),
        (b"HTTPS", b"on"),
        (b"CONTENT_LENGTH", b"100000"),
        (b"HTTP_COOKIE", b"a=1;b=2"),
        (b"SERVER_PROTOCOL", b"HTTP/2"),
    ]


def caddy_chunked() -> Pairs:
    return [
        (b"HTTP_X_FORWARDED_FOR", b"127.0.0.1"),
        (b"PATH_INFO", b"/app/foo/bar"),
        (b"CONTENT_LENGTH", b"-1"),
        *common(REQUEST_METHOD=b"POST", SERVER_ADDR=None),  # type: ignore[arg-type]
        (b"SCRIPT_NAME", b""),
        (b"REQUEST_SCHEME", b"https"),
        (b"HTTP_CONTENT_LENGTH", b"7"),
        (b"HTTP_CONTENT_TYPE", b"text/plain"),
    ]


def cgi_fcgi() -> Pairs:
    return [
        (b"REQUEST_METHOD", b"GET"),
        (b"SCRIPT_NAME", b"/app/foo/bar"),
        (b"PATH", b"/usr/bin"),
        (b"HOME", b"/root"),
    ]


@pytest.mark.parametrize(
    ("params", "root_path", "script_name", "path_info"),
    [
        (nginx(), "", "", "/app/foo/bar"),
        (nginx(), "/app", "/app", "/foo/bar"),
        (nginx(), "/app/", "/app", "/foo/bar"),
        (apache_proxy_fcgi_chunked(), "/app", "/app", "/foo/bar"),
        (mod_fcgid(), "", "/app", "/foo/bar"),
        (mod_fcgid(), "/app", "/app", "/foo/bar"),  # already split: not prefixed twice
        (lighttpd(), "", "/app", "/foo/bar"),
        (h2o_tls(), "", "", "/app/foo/bar"),
        (h2o_tls(), "/app", "/app", "/foo/bar"),
        (caddy_chunked(), "/app", "/app", "/foo/bar"),
        (cgi_fcgi(), "", "", "/app/foo/bar"),
    ],
    ids=[
        "nginx",
        "nginx-root",
        "nginx-root-slash",
        "apache-proxy",
        "fcgid",
        "fcgid-root",
        "lighttpd",
        "h2o",
        "h2o-root",
        "caddy-root",
        "cgi-fcgi",
    ],
)
def test_script_name_and_path_info_for_every_server(
    params: Pairs, root_path: str, script_name: str, path_info: str
) -> None:
    environ = wsgi_environ(params, root_path)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == (script_name, path_info)
    assert environ["QUERY_STRING"] in ("", QUERY.decode())


def at_mount_point(server: str) -> Pairs:
    """``GET /app?x=1``, exactly the mount point, as each server sends it (HAProxy 2.6 and
    lighttpd 1.4.69 captured; web-servers.md §1, §7)."""
    request = {b"REQUEST_URI": b"/app?x=1", b"QUERY_STRING": b"x=1", b"REQUEST_METHOD": b"GET"}
    shapes: dict[str, dict[bytes, bytes]] = {
        # path-info ^(/app)(/.*)?$ matched with nothing for PATH_INFO: HAProxy sends none
        "haproxy": {b"SCRIPT_FILENAME": b"/srv/www/app", b"DOCUMENT_ROOT": b"/srv/www"},
        "haproxy-docroot-slash": {b"SCRIPT_FILENAME": b"//app", b"DOCUMENT_ROOT": b"/"},
        "lighttpd": {
            b"SCRIPT_FILENAME": b"/var/www/html/app",
            b"DOCUMENT_ROOT": b"/var/www/html",
            b"SERVER_SOFTWARE": b"lighttpd/1.4.69",
        },
        "nginx": {b"DOCUMENT_URI": b"/app"},  # stock fastcgi_params: the whole path
        "nginx-fastcgi.conf": {  # the PHP-style file also sends SCRIPT_FILENAME
            b"DOCUMENT_URI": b"/app",
            b"SCRIPT_FILENAME": b"/var/www/html/app",
            b"DOCUMENT_ROOT": b"/var/www/html",
        },
        "apache-proxy": {
            b"SCRIPT_FILENAME": b"proxy:fcgi://127.0.0.1:9000/app",
            b"DOCUMENT_ROOT": b"/var/www/html",
        },
        "apache-proxy-generic": {b"SCRIPT_FILENAME": b"/app", b"DOCUMENT_ROOT": b"/var/www/html"},
        "no-request-uri": {b"SCRIPT_FILENAME": b"/srv/www/app", b"DOCUMENT_ROOT": b"/srv/www"},
    }
    params = {**request, b"SCRIPT_NAME": b"/app", **shapes[server]}
    if server == "no-request-uri":
        del params[b"REQUEST_URI"]
    return list(params.items())


@pytest.mark.parametrize(
    ("server", "root_path", "script_name", "path_info"),
    [
        ("haproxy", "", "/app", ""),
        ("haproxy", "/app", "/app", ""),
        ("haproxy-docroot-slash", "", "/app", ""),
        ("lighttpd", "", "/app", ""),
        ("nginx", "", "", "/app"),
        ("nginx", "/app", "/app", ""),
        ("nginx-fastcgi.conf", "", "", "/app"),
        ("apache-proxy", "", "", "/app"),
        ("apache-proxy-generic", "", "", "/app"),
        ("no-request-uri", "", "", "/app"),
    ],
)
def test_a_request_for_exactly_the_mount_point_keeps_it_in_script_name(
    server: str, root_path: str, script_name: str, path_info: str
) -> None:
    """HAProxy and lighttpd split the path themselves and send no PATH_INFO when nothing
    follows the mount point; nginx and Apache ProxyPass send the whole path that way."""
    params = at_mount_point(server)
    environ = wsgi_environ(params, root_path)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == (script_name, path_info)
    scope = build_scope(AsyncMemoryChannel(tuple(params)), root_path)
    assert (scope["root_path"], scope["path"]) == (script_name, script_name + path_info)


def test_a_haproxy_mount_point_is_where_flask_and_starlette_apps_start() -> None:
    """What a user sees at https://host/app behind HAProxy's path-info: the app's own
    redirect to /app/ (it was a 404 for the app's route "/app")."""
    flask = pytest.importorskip("flask")
    applications = pytest.importorskip("starlette.applications")
    responses = pytest.importorskip("starlette.responses")
    routing = pytest.importorskip("starlette.routing")
    params = (*at_mount_point("haproxy"), (b"HTTP_HOST", b"example.test"))

    wsgi_app = flask.Flask(__name__)
    wsgi_app.add_url_rule("/", "index", lambda: "home")
    channel = MemoryChannel(params)
    run_wsgi(wsgi_app, channel)
    status, headers, _ = channel.response()
    assert (status[:3], headers["Location"]) == ("308", "http://example.test/app/?x=1")

    async def home(request: object) -> object:
        return responses.PlainTextResponse("home")

    asgi_app = applications.Starlette(routes=[routing.Route("/", home)])
    async_channel = AsyncMemoryChannel(params)
    asyncio.run(run_asgi(asgi_app, async_channel))
    status, headers, _ = async_channel.response()
    assert (status[:3], headers["location"]) == ("307", "http://example.test/app/?x=1")


def test_haproxy_without_path_info_needs_the_root_path_under_a_sub_path() -> None:
    """Without ``path-info`` HAProxy sends every path as a mount point would look: the
    ambiguity is_mount_point documents. --root-path settles it."""
    params = [
        (b"SCRIPT_NAME", b"/app/foo/bar"),
        (b"REQUEST_URI", b"/app/foo/bar"),
        (b"SCRIPT_FILENAME", b"/srv/www/app/foo/bar"),
        (b"DOCUMENT_ROOT", b"/srv/www"),
    ]
    environ = wsgi_environ(params, "/app")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/foo/bar")
    root = [(b"SCRIPT_NAME", b"/"), (b"REQUEST_URI", b"/")]
    root += [(b"SCRIPT_FILENAME", b"/srv/www/"), (b"DOCUMENT_ROOT", b"/srv/www")]
    environ = wsgi_environ(root)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", "/")


def test_a_percent_encoded_mount_point_is_recognised() -> None:
    params = [
        (b"SCRIPT_NAME", "/caf\u00e9".encode()),
        (b"REQUEST_URI", b"/caf%C3%A9?x=1"),
        (b"SCRIPT_FILENAME", "/srv/www/caf\u00e9".encode()),
        (b"DOCUMENT_ROOT", b"/srv/www"),
    ]
    environ = wsgi_environ(params)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/caf\u00c3\u00a9", "")


def test_root_path_only_on_a_segment_boundary() -> None:
    assert split_script_path("/apple/x", None, "/app") == ("", "/apple/x")
    assert split_script_path("/app", None, "/app") == ("/app", "")
    assert split_script_path("/", None, "/") == ("", "/")  # nginx "/" root, "/" = no prefix


def test_nginx_repeated_headers_and_cookies_are_joined_and_httpoxy_dropped() -> None:
    environ = wsgi_environ(nginx())
    assert environ["HTTP_X_DUP"] == "a, b"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_PROXY" not in environ
    assert "CONTENT_LENGTH" not in environ  # "" means unknown
    assert "CONTENT_TYPE" not in environ
    assert environ["wsgi.url_scheme"] == "http"


def test_apache_chunked_body_keeps_transfer_encoding_when_length_is_unknown() -> None:
    environ = wsgi_environ(apache_proxy_fcgi_chunked())
    assert "CONTENT_LENGTH" not in environ
    assert environ["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert environ["HTTP_COOKIE"] == "a=1, b=2"  # Apache joined it already; kept as sent


def test_caddy_minus_one_length_and_duplicate_content_headers() -> None:
    environ = wsgi_environ(caddy_chunked())
    assert "CONTENT_LENGTH" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["wsgi.url_scheme"] == "https"


def test_h2o_https_without_request_scheme_and_a_real_length() -> None:
    environ = wsgi_environ(h2o_tls())
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["CONTENT_LENGTH"] == "100000"


def test_values_are_latin1_strings_as_pep_3333_requires() -> None:
    environ = wsgi_environ([(b"SCRIPT_NAME", "/caf\u00e9".encode())])
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9"  # the UTF-8 bytes, one char each
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/caf\u00e9"


def test_non_http_duplicates_last_one_wins() -> None:
    environ = wsgi_environ([(b"CONTENT_LENGTH", b"5"), (b"CONTENT_LENGTH", b"7")])
    assert environ["CONTENT_LENGTH"] == "7"


def test_missing_cgi_variables_get_pep_3333_defaults() -> None:
    environ = wsgi_environ(cgi_fcgi())
    assert environ["SERVER_NAME"] == "localhost"
    assert environ["SERVER_PORT"] == "80"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["QUERY_STRING"] == ""
    environ = wsgi_environ([(b"HTTP_HOST", b"[::1]:8443"), (b"HTTPS", b"ON")])
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("[::1]", "8443")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("-1", None), ("12x", None), ("0", 0), ("100000", 100000)],
)
def test_content_length_forms(value: str | None, expected: int | None) -> None:
    assert content_length(value) == expected


@pytest.mark.parametrize(
    ("https", "scheme", "expected"),
    [
        ("on", None, "https"),
        ("1", None, "https"),
        ("YES", None, "https"),
        ("off", None, "http"),
        (None, "https", "https"),
        (None, "http", "http"),
        (None, None, "http"),
    ],
)
def test_url_scheme(https: str | None, scheme: str | None, expected: str) -> None:
    assert url_scheme(https, scheme) == expected


def test_split_host() -> None:
    assert split_host("example.test:8080") == ("example.test", "8080")
    assert split_host("example.test") == ("example.test", "")
    assert split_host("example.test:") == ("example.test", "")  # RFC 3986: an empty port
    assert split_host("[::1]:80") == ("[::1]", "80")  # RFC 3875 §4.1.14 keeps the brackets
    assert split_host("[::1]") == ("[::1]", "")
    assert split_host("::1") == ("::1", "")  # a bare IPv6 address has no port
    assert split_host("example.test:8x") == ("example.test:8x", "")


def haproxy(host: bytes) -> Pairs:
    """HAProxy 2.6 fcgi-app (web-servers.md §7): SERVER_NAME is the Host header verbatim,
    SERVER_PORT the frontend's port, and no SERVER_ADDR."""
    return [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"DOCUMENT_ROOT", b"/srv/www"),
        (b"SCRIPT_NAME", b"/app"),
        (b"PATH_INFO", b"/foo/bar"),
        (b"REQUEST_URI", b"/app/foo/bar"),
        (b"REQUEST_METHOD", b"GET"),
        (b"QUERY_STRING", b""),
        (b"SERVER_NAME", host),
        (b"SERVER_PORT", b"8080"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"52254"),
        (b"SCRIPT_FILENAME", b"/srv/www/app"),
        (b"CONTENT_LENGTH", b"0"),
        (b"SERVER_SOFTWARE", b"HAProxy 2.6.12-1+deb12u4"),
    ]


@pytest.mark.parametrize(
    ("host", "server_name", "asgi_server", "url"),
    [
        (b"127.0.0.1:8080", "127.0.0.1", ("127.0.0.1", 8080), "http://127.0.0.1:8080/app/foo/bar"),
        (b"example.test:8080", "example.test", ("example.test", 8080), None),
        (b"[::1]:8080", "[::1]", ("::1", 8080), "http://[::1]:8080/app/foo/bar"),
        (b"example.test", "example.test", ("example.test", 8080), None),
    ],
)
def test_server_name_loses_the_port_haproxy_copies_from_the_host_header(
    host: bytes, server_name: str, asgi_server: tuple[str, int], url: str | None
) -> None:
    """HAProxy's SERVER_NAME ``127.0.0.1:8080`` is not a server-name (RFC 3875 §4.1.14).
    Without a Host header, apps build their URLs from these, so a port left in them doubles:
    ``http://127.0.0.1:8080:8080/``."""
    environ = wsgi_environ(haproxy(host))
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (server_name, "8080")
    channel = AsyncMemoryChannel(tuple(haproxy(host)))
    scope = build_scope(channel, "")
    assert scope["server"] == asgi_server
    if url is not None:
        # PEP 3333's reconstruction (wsgiref) and Starlette's, both from the server's own name.
        assert wsgiref.util.request_uri(environ) == url
        starlette = pytest.importorskip("starlette.datastructures")
        assert str(starlette.URL(scope=scope)) == url


# -- the ASGI pieces -------------------------------------------------------------------------


def test_asgi_headers_keep_repeats_and_take_body_headers_from_cgi() -> None:
    headers = asgi_headers_of([*nginx(), (b"CONTENT_LENGTH", b"7"), (b"CONTENT_TYPE", b"a/b")])
    assert headers.count((b"x-dup", b"a")) == 1
    assert headers.count((b"x-dup", b"b")) == 1
    assert (b"cookie", b"a=1") in headers
    assert (b"content-length", b"7") in headers
    assert (b"content-type", b"a/b") in headers
    assert not any(name == b"proxy" for name, _ in headers)


def test_asgi_headers_drop_transfer_encoding_only_when_the_length_is_known() -> None:
    chunked = asgi_headers_of(apache_proxy_fcgi_chunked())
    assert (b"transfer-encoding", b"chunked") in chunked
    known = asgi_headers_of([*apache_proxy_fcgi_chunked(), (b"CONTENT_LENGTH", b"10")])
    assert not any(name == b"transfer-encoding" for name, _ in known)
    caddy = asgi_headers_of(caddy_chunked())
    assert not any(name in (b"content-length", b"content-type") for name, _ in caddy)


@pytest.mark.parametrize(
    ("protocol", "version"),
    [("HTTP/1.0", "1.0"), ("HTTP/1.1", "1.1"), ("HTTP/2.0", "2"), ("HTTP/2", "2"), (None, "1.1")],
)
def test_http_version(protocol: str | None, version: str) -> None:
    assert http_version(protocol) == version


def test_asgi_path_decodes_utf8_and_falls_back_to_latin1() -> None:
    assert asgi_path("/caf\u00c3\u00a9") == "/caf\u00e9"
    assert asgi_path("/\u00ff") == "/\u00ff"  # a lone 0xFF byte is not UTF-8


def test_raw_path_only_when_consistent_with_the_path() -> None:
    assert raw_path("/app/sp%20ace?x=1", "/app/sp ace") == b"/app/sp%20ace"
    # mod_fcgid internal redirect: REQUEST_URI is still the original request
    assert raw_path("/app/lr?x", "/app/redirected") is None
    assert raw_path(None, "/x") is None


def test_address_pairs() -> None:
    assert address_pair("127.0.0.1", "51234") == ("127.0.0.1", 51234)
    assert address_pair(None, None) is None
    assert address_pair("10.0.0.1", "") is None


def asgi_headers_of(params: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return asgi_params(params)[1]


def test_asgi_params_keep_the_last_of_a_repeated_param_and_leave_headers_out() -> None:
    scope_params, headers = asgi_params(
        [
            (b"SCRIPT_NAME", b"/a"),
            (b"HTTP_HOST", b"h"),
            (b"HTTPS", b"on"),
            (b"DOCUMENT_ROOT", b"/srv"),
            (b"SCRIPT_NAME", b"/b"),
        ]
    )
    by_name = {
        name: value
        for name, value in zip(SCOPE_PARAMS, scope_params, strict=True)
        if value is not None
    }
    assert by_name == {b"SCRIPT_NAME": b"/b", b"HTTPS": b"on"}
    assert headers == [(b"host", b"h")]


def test_environ_follows_each_requests_own_names_whatever_came_before() -> None:
    # The translator remembers the last request's names by position: a request whose names
    # differ at some positions (another server, another location) must not inherit them.
    first = wsgi_environ(nginx())
    reordered = nginx()[1:] + nginx()[:1]  # every name moves, repeats keep their order
    swapped = [
        (b"HTTP_X_ONE", b"1") if name == b"HTTP_HOST" else (name, value) for name, value in nginx()
    ]
    assert wsgi_environ(reordered) == first
    environ = wsgi_environ(swapped)
    assert environ["HTTP_X_ONE"] == "1"
    assert "HTTP_HOST" not in environ
    assert wsgi_environ(nginx()) == first
    assert wsgi_environ(nginx()[:3]).keys() <= first.keys()


def test_each_request_gets_its_own_values_where_the_last_one_had_others() -> None:
    """Values are remembered by position from one request to the next (most repeat): a
    changed one, a longer list, a shorter one and the first again all come out as sent."""
    first = [(b"REQUEST_URI", b"/a"), (b"HTTP_HOST", b"one.test"), (b"QUERY_STRING", b"x=1")]
    second = [(b"REQUEST_URI", b"/b"), (b"HTTP_HOST", b"one.test"), (b"QUERY_STRING", b"x=2")]
    longer = [*second, (b"HTTP_X_EXTRA", b"\xe9")]
    shorter = [(b"QUERY_STRING", b"/a")]  # another param's value, at another's position
    for params in (first, second, longer, shorter, first, longer):
        environ = wsgi_environ(params)
        for name, value in params:
            assert environ[name.decode()] == value.decode("latin-1")


@pytest.mark.parametrize("base", [None, {"wsgi.version": (1, 0), "wsgi.run_once": False}])
def test_requests_that_share_their_names_each_get_their_own_environ(
    base: dict[str, object] | None,
) -> None:
    """A web server sends the same names in the same order, request after request, and the
    translator starts from the last such environ then. Every request still gets exactly
    what it would alone: its own values, none of the last one's, whether its names match
    the last request's or not (fewer, more, repeated, dropped, reordered)."""
    shapes = [
        [
            b"REQUEST_METHOD",
            b"REQUEST_URI",
            b"SCRIPT_NAME",
            b"PATH_INFO",
            b"QUERY_STRING",
            b"CONTENT_LENGTH",
            b"CONTENT_TYPE",
            b"HTTP_HOST",
            b"HTTP_COOKIE",
            b"SERVER_PORT",
            b"HTTPS",
            b"HTTP_TRANSFER_ENCODING",
            b"SERVER_NAME",
        ],
        [b"REQUEST_METHOD", b"REQUEST_URI", b"SCRIPT_NAME", b"PATH_INFO", b"QUERY_STRING"],
        [b"REQUEST_METHOD", b"HTTP_COOKIE", b"HTTP_COOKIE", b"PATH_INFO", b"PATH_INFO"],
        [b"REQUEST_METHOD", b"HTTP_PROXY", b"HTTP_CONTENT_LENGTH", b"wsgi.input", b"HTTP_HOST"],
        [b"PATH_INFO", b"REQUEST_METHOD", b"QUERY_STRING", b"SCRIPT_NAME", b"REQUEST_URI"],
    ]
    values = [b"", b"0", b"12", b"on", b"/a", b"/a/b", b"x=1", b"POST", b"h:81", b"k=v"]
    rng = random.Random(1)
    for _ in range(400):
        names = shapes[rng.choice((0, 0, 0, 1, 1, 2, 3, 4))]
        params = [(name, rng.choice(values)) for name in names]
        environ = wsgi_environ(params, "", base)
        params_module._LAST_ENVIRON.clear()  # made alone: nothing remembered
        assert environ == wsgi_environ(params, "", base), params
