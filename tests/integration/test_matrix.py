"""Every real web server in front of fcgigw, for a WSGI and an ASGI app: the conformance
matrix. Each server runs from its config in examples/servers/ (only ports, paths and the user
changed), in every way of mounting the app that config shows. Each check is written once;
what a server does differently (web-servers.md, and what this matrix found) is data: a
Profile per server, a Variant per mount. Two fcgigw bugs it found are replayed, failing
every time, in test_matrix_peers.py.

The servers start on first use and stay up until the module ends (matrix_servers.py); each
test makes a few requests. The README's "Web servers" table reports what this verifies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from matrix_clients import (
    CUT_UPLOAD_PROMISED,
    CUT_UPLOAD_SENT,
    TIMEOUT,
    CgiClient,
    Client,
    Headers,
    Response,
    hang_up_mid_response,
    http2_post,
    leave_mid_upload,
    leave_mid_upload_http2,
    post_while_reading,
    refused_upload,
)
from matrix_servers import Stack, Stacks
from matrixapps import (
    DISCONNECTED,
    FINISHED,
    FIRST,
    REDIRECTED,
    RELEASED,
    STOPPED,
    TIMED_OUT,
    TOO_LARGE,
)
from servers import short_tempdir
from testapps import ERROR

from fcgigw.diagnostics import server_docs

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Profile:
    """A web server, and what it does differently (§: web-servers.md)."""

    server: str  # the key of its stack in matrix_servers.SERVERS
    detected_as: str | None  # what the diagnostics page takes it for
    # §3, §5: the Cookie the app gets for two Cookie headers a=1 and b=2
    cookie: str = "a=1; b=2"
    # §3: Caddy passes the CGI Status header on to the client
    echoes_status: bool = False
    # §3 says Caddy drops FCGI_STDERR unless capture_stderr is set; Caddy 2.6 drops it even
    # then (fixed in Caddy 2.7)
    logs_app_stderr: bool = True
    # Not in web-servers.md, seen with this matrix: nginx stops sending the request body
    # once the response has begun, then waits for FCGI_END_REQUEST; mod_fcgid and Caddy
    # send the whole body before they read any of the response
    stops_sending_body_once_answered: bool = False
    sends_body_before_reading: bool = False
    # §4: cgi-fcgi sends CONTENT_LENGTH bytes of the body; a chunked request has none
    chunked_upload: bool = True
    # §7: HAProxy answers 400 itself to a chunked body that does not fit in its buffer
    # (tune.bufsize, 16 KiB by default); a smaller one reaches the app with CONTENT_LENGTH
    largest_chunked_upload: int | None = None
    # §2: only nginx tells the app (it closes the connection) when the client leaves before
    # any of the response has come; the others let the app run on
    notices_early_hang_up: bool = False
    # Not in web-servers.md, seen with this matrix: an HTTP/2 body without a Content-Length
    # gets lighttpd's own 411; HAProxy passes one only if it fits in its buffer with the
    # request's headers (16,000 bytes did not)
    http2_length_required: bool = False
    largest_http2_upload_without_length: int | None = None
    # Apache (mod_http2) ends an HTTP/2 body at its Content-Length, answers, and resets the
    # stream if the client has not ended it yet (RFC 9113 §8.1 allows it); curl 7.88 then
    # drops the response, against the same section, when the stream's end comes in a frame
    # of its own: so its uploads are read from a file, which ends with the body's last frame
    ends_http2_body_at_its_length: bool = False
    # Not in web-servers.md, seen with this matrix: when the client leaves mid-upload, Apache
    # (mod_proxy_fcgi), Caddy and HAProxy have passed part of the body on and close the
    # FastCGI connection, and cgi-fcgi (whose stdin ends early) sends STDIN's empty record
    # and waits for the answer (§6.2); nginx, mod_fcgid, lighttpd and h2o read the whole body
    # before they call the app, so it never sees such a request
    passes_a_cut_upload: bool = False
    # Not in web-servers.md, seen with this matrix: the response head a server passes on.
    # Apache answers 500 to a header line over 8,192 bytes ("AH01070: Error parsing script
    # headers", a limit built into httpd); HAProxy 502 to a head that does not fit in its
    # buffer (tune.bufsize, 16 KiB); nginx 502 to one over fastcgi_buffer_size (the example
    # sets 32k; the default 4k); lighttpd takes 64 KiB. h2o (503, "received broken
    # response") and HAProxy (502) refuse a head of over 100 lines, Status included
    response_header_line_limit: int | None = None
    response_head_limit: int | None = None
    response_head_lines_limit: int | None = None
    response_head_refused_with: int = 502
    # And the request head it passes on (larger ones get its own 400, 431 or 500): nginx
    # refuses a line over 8 KiB or a head over 32 KiB (large_client_header_buffers 4 8k),
    # Apache a line over 8,190 bytes (LimitRequestFieldSize), mod_fcgid params that do not
    # fit in one 64 KiB record, lighttpd a head over 8 KiB (server.max-request-field-size),
    # HAProxy one over its buffer; Apache (LimitRequestFields), h2o and HAProxy one of over
    # 100 lines (nginx, lighttpd and Caddy pass 150)
    request_header_line_limit: int | None = None
    request_head_limit: int | None = None
    request_head_lines_limit: int | None = None
    # §4: cgi-fcgi passes its whole environment on as params (here the shell's PWD too)
    forwards_environment: bool = False
    # False for cgi-fcgi: a CGI program, not an HTTP server (no TLS, no connections)
    http: bool = True


NGINX = Profile(
    "nginx",
    "nginx",
    stops_sending_body_once_answered=True,
    notices_early_hang_up=True,
    request_header_line_limit=8 * 1024,
    request_head_limit=32 * 1024,
)
#: What Apache does whichever module passes the request on.
APACHE: dict[str, Any] = {
    "cookie": "a=1, b=2",
    "ends_http2_body_at_its_length": True,
    "response_header_line_limit": 8192,
    "response_head_refused_with": 500,
    "request_header_line_limit": 8190,
    "request_head_lines_limit": 100,
}
APACHE_PROXY_FCGI = Profile(
    "apache-proxy-fcgi", "apache-proxy-fcgi", passes_a_cut_upload=True, **APACHE
)
APACHE_FCGID = Profile(
    "apache-fcgid",
    "apache-fcgid",
    sends_body_before_reading=True,
    request_head_limit=64 * 1024,
    **APACHE,
)
LIGHTTPD = Profile("lighttpd", "lighttpd", http2_length_required=True, request_head_limit=8 * 1024)
H2O = Profile(
    "h2o",
    "h2o",
    cookie="a=1;b=2",
    response_head_lines_limit=100,
    response_head_refused_with=503,
    request_head_lines_limit=100,
)
CADDY = Profile(
    "caddy",
    "caddy",
    cookie="a=1, b=2",
    echoes_status=True,
    logs_app_stderr=False,
    sends_body_before_reading=True,
    passes_a_cut_upload=True,
)
# The test is the CGI host: SERVER_SOFTWARE names no server the page knows.
CGI_FCGI = Profile(
    "cgi-fcgi",
    None,
    chunked_upload=False,
    passes_a_cut_upload=True,
    forwards_environment=True,
    http=False,
)
# fcgigw's diagnostics page does not know HAProxy's SERVER_SOFTWARE ("HAProxy 2.6.12...") yet.
HAPROXY = Profile(
    "haproxy",
    "haproxy",
    largest_chunked_upload=16 * 1024 - 1,
    largest_http2_upload_without_length=8 * 1024,
    passes_a_cut_upload=True,
    response_head_limit=16 * 1024,
    response_head_lines_limit=100,
    request_head_limit=16 * 1024,
    request_head_lines_limit=100,
)


@dataclass(frozen=True)
class Variant:
    """One way of mounting the app in one server's example config."""

    name: str
    profile: Profile
    prefix: str  # the mount point: SCRIPT_NAME and root_path ("" at the root of the site)
    unix: bool = False  # the server reaches fcgigw over a Unix socket (else TCP)
    # §2: FCGI_KEEP_CONN: one FastCGI connection serves request after request
    keeps_app_connections: bool = False
    # §3: the server passes each part of the response on as the app produces it
    streams: bool = True
    # the mount point itself (``GET /app``, no slash) reaches the app (nginx redirects it to
    # /app/, Apache ProxyPass and Caddy's handle /app/* do not match it)
    serves_mount_point: bool = False


VARIANTS = [
    # location /app/, stock fastcgi_params, --root-path /app, fastcgi_keep_conn
    Variant("nginx", NGINX, "/app", keeps_app_connections=True),
    # location /split/ with fastcgi_split_path_info
    Variant("nginx-split", NGINX, "/split", unix=True),
    # ProxyPass, --root-path /app, enablereuse=on
    Variant("apache-proxypass", APACHE_PROXY_FCGI, "/app", keeps_app_connections=True),
    # ProxyPass with proxy-fcgi-pathinfo=unescape
    Variant("apache-pathinfo", APACHE_PROXY_FCGI, "/pinfo", unix=True),
    # SetHandler, enablereuse=on
    Variant("apache-sethandler", APACHE_PROXY_FCGI, "/sh", keeps_app_connections=True),
    # ScriptAlias /app to app.fcgi, which mod_fcgid starts
    Variant("apache-fcgid", APACHE_FCGID, "/app", unix=True, serves_mount_point=True),
    # "/app" with host and port, server.stream-response-body = 2
    Variant("lighttpd", LIGHTTPD, "/app", serves_mount_point=True),
    # "/" with bin-path and fix-root-scriptname, lighttpd's default response buffering
    Variant("lighttpd-spawn", LIGHTTPD, "", unix=True, streams=False),
    # fastcgi.connect, --root-path /app (no keep-alive: h2o 2.2 aborts with it)
    Variant("h2o", H2O, "/app", serves_mount_point=True),
    # fastcgi.spawn at /
    Variant("h2o-spawn", H2O, "", unix=True),
    # reverse_proxy with transport fastcgi, --root-path /app
    Variant("caddy", CADDY, "/app"),
    # transport fastcgi with split /split
    Variant("caddy-split", CADDY, "/split", unix=True),
    # cgi-fcgi.cgi run by a CGI host (the test) as for ScriptAlias /app
    Variant("cgi-fcgi", CGI_FCGI, "/app", unix=True, serves_mount_point=True),
    # fcgi-app with path-info ^(/app)(/.*)?$, keep-conn; fcgigw without --root-path
    Variant("haproxy", HAPROXY, "/app", keeps_app_connections=True, serves_mount_point=True),
    # fcgi-app with path-info ^()(/.*)$ at the root of the site
    Variant("haproxy-root", HAPROXY, "", unix=True),
]
INTERFACES = ("wsgi", "asgi")


def matrix(
    *,
    http: bool = False,
    interfaces: tuple[str, ...] = INTERFACES,
    include: Callable[[Variant, str], bool] = lambda variant, interface: True,
    marks: Callable[[Variant, str], tuple[pytest.MarkDecorator, ...]] = lambda v, i: (),
) -> pytest.MarkDecorator:
    """Parametrize a check over every variant (only HTTP servers if ``http``) and interface
    for which ``include`` is true, each case with its ``marks`` (a strict xfail for a known
    fcgigw bug)."""
    return pytest.mark.parametrize(
        "target",
        [
            pytest.param(
                (variant, interface),
                id=f"{variant.name}-{interface}",
                marks=marks(variant, interface),
            )
            for variant in VARIANTS
            for interface in interfaces
            if (variant.profile.http or not http) and include(variant, interface)
        ],
        indirect=True,
    )


@pytest.fixture(scope="module")
def stacks() -> Iterator[Stacks]:
    workdir = Path(short_tempdir())
    workdir.chmod(0o755)  # mod_fcgid's app (www-data) runs wrappers and sees release files
    try:
        running = Stacks(workdir)
        try:
            yield running
        finally:
            running.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Seen:
    """What the app was given (testapps.echo or asgiapps.echo), the same for both
    interfaces: ``script_name`` is SCRIPT_NAME or root_path, ``path`` the rest as text."""

    data: dict[str, Any]
    interface: str

    @property
    def script_name(self) -> str:
        return str(self.data["SCRIPT_NAME" if self.interface == "wsgi" else "root_path"])

    @property
    def path(self) -> str:
        if self.interface == "wsgi":  # PEP 3333: the bytes the server sent, as latin-1
            return str(self.data["PATH_INFO"]).encode("latin-1").decode("utf-8")
        return str(self.data["path"])[len(self.script_name) :]

    @property
    def query(self) -> str:
        return str(self.data["QUERY_STRING" if self.interface == "wsgi" else "query_string"])

    @property
    def scheme(self) -> str:
        return str(self.data["wsgi.url_scheme" if self.interface == "wsgi" else "scheme"])

    @property
    def content_type(self) -> str | None:
        if self.interface == "wsgi":
            return self.data.get("CONTENT_TYPE")
        return self.header("content-type")

    def header(self, name: str) -> str | None:
        if self.interface == "wsgi":
            return self.data.get("HTTP_" + name.upper().replace("-", "_"))
        values = [value for key, value in self.data["headers"] if key == name.lower()]
        return ("; " if name.lower() == "cookie" else ", ").join(values) if values else None


@dataclass
class Target:
    variant: Variant
    interface: str
    stack: Stack

    def client(self, *, tls: bool = False, timeout: float = TIMEOUT) -> Client:
        return self.stack.client(self.variant.prefix, tls=tls, timeout=timeout)

    def url(self, path: str) -> str:
        return self.variant.prefix + path

    def fetch(self, method: str, path: str, headers: Headers = ()) -> Response:
        """One request on a connection of its own."""
        with contextlib.closing(self.client()) as client:
            return client.request(method, self.url(path), headers)

    def echo(
        self,
        path: str = "/echo",
        method: str = "GET",
        headers: Headers = (),
        body: bytes | None = None,
        *,
        client: Client | None = None,
        chunked: bool = False,
    ) -> Seen:
        with contextlib.ExitStack() as own:
            if client is None:  # a connection for this request only
                client = own.enter_context(contextlib.closing(self.client()))
            response = client.request(method, self.url(path), headers, body, chunked=chunked)
        assert response.status == 200, response
        return Seen(json.loads(response.body), self.interface)


@pytest.fixture
def target(request: pytest.FixtureRequest, stacks: Stacks) -> Target:
    variant, interface = request.param
    return Target(variant, interface, stacks.get(variant.profile.server, interface))


# -- paths, query strings, scheme -----------------------------------------------------------

QUERY = "x=1&y=a%20b&z=%2F&u=%C3%A9"


@matrix()
def test_mount_point_percent_encoded_utf8_path_and_query(target: Target) -> None:
    seen = target.echo(f"/echo/sp%20ace/caf%C3%A9?{QUERY}")
    assert (seen.script_name, seen.path) == (target.variant.prefix, "/echo/sp ace/caf\u00e9")
    assert seen.query == QUERY
    assert seen.scheme == "http"
    if target.interface == "asgi":
        assert seen.data["raw_path"] == target.url("/echo/sp%20ace/caf%C3%A9")


@matrix(
    include=lambda variant, interface: variant.serves_mount_point,
)
def test_the_mount_point_itself(target: Target) -> None:
    """``GET /app`` (no slash): SCRIPT_NAME is the mount point and the path is empty."""
    seen = target.echo("?at=mount")
    assert (seen.script_name, seen.path, seen.query) == (target.variant.prefix, "", "at=mount")


@matrix(http=True)
def test_server_name_has_no_port(target: Target) -> None:
    """PEP 3333 SERVER_NAME and the host of ASGI's ``server`` are a host name or address
    (RFC 3875 §4.1.14); the port is SERVER_PORT, the port of ``server``."""
    seen = target.echo("/echo/server")
    if target.interface == "wsgi":
        name, port = seen.data["SERVER_NAME"], seen.data["SERVER_PORT"]
    else:
        name, port = seen.data["server"][0], str(seen.data["server"][1])
    assert re.fullmatch(r"[^:\[\]]+|\[[0-9A-Fa-f:.]+\]", name), (name, port)
    assert port.isdigit(), (name, port)


@matrix(http=True)
def test_https_listener_gives_the_https_scheme(target: Target) -> None:
    with contextlib.closing(target.client(tls=True)) as client:
        seen = target.echo("/echo/tls", client=client)
    assert seen.scheme == "https"
    assert (seen.script_name, seen.path) == (target.variant.prefix, "/echo/tls")


# -- request bodies --------------------------------------------------------------------------

BODY = hashlib.sha256(b"matrix").digest() * (5 * 1024 * 1024 // 32)  # 5 MiB
#: A pause in a client's upload: longer than fcgigw's wait for nginx's body and its clock tick.
CLIENT_PAUSE_SECONDS = 1.0
FORM = b"name=caf%C3%A9&n=2"
#: form: (method, body, chunked): each way a request says how long its body is
BODIES = {
    "get-no-body": ("GET", None, False),
    "post-content-length-0": ("POST", b"", False),
    "post-form": ("POST", FORM, False),
    "put-64KiB-plus-1": ("PUT", BODY[: 65536 + 1], False),
    "post-5MiB": ("POST", BODY, False),
    "post-chunked-8000": ("POST", BODY[:8000], True),
    "post-chunked-100000": ("POST", BODY[:100000], True),
}


@matrix()
@pytest.mark.parametrize("form", BODIES)
def test_request_body_arrives_whole(target: Target, form: str) -> None:
    method, body, chunked = BODIES[form]
    headers = [("Content-Type", "application/x-www-form-urlencoded")] if body == FORM else []
    largest = target.variant.profile.largest_chunked_upload
    if chunked and largest is not None and len(body or b"") > largest:
        assert target.stack.http is not None
        response = refused_upload(target.stack.http, target.url("/echo"), body or b"", TIMEOUT)
        assert response.status == 400, response  # HAProxy's own, before the app is asked
        return
    seen = target.echo("/echo", method, headers, body, chunked=chunked)
    expected = body or b""
    if chunked and not target.variant.profile.chunked_upload:
        expected = b""  # cgi-fcgi: no CONTENT_LENGTH, so it sends no body
    assert (seen.data["body_length"], seen.data["body_sha256"]) == (
        len(expected),
        hashlib.sha256(expected).hexdigest(),
    )
    if body == FORM:
        assert seen.content_type == "application/x-www-form-urlencoded"


#: HTTP/2: the body in three parts, this far apart.
HTTP2_PAUSE_SECONDS = 0.2


@matrix(http=True)
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "no-length"])
def test_http2_upload_with_pauses_arrives_whole(target: Target, length: bool) -> None:
    """The client speaks HTTP/2 (the example configs offer it over TLS) and sends its body
    in three parts. mod_fcgid then sends an empty STDIN record wherever the client paused,
    and fcgigw took the first for the end of the body (the next record broke the connection:
    Apache's 500: the no-length case); HAProxy now and then sent no empty record after the
    body at all (the app waited for it forever: the length case). fcgigw now reads a body
    against its CONTENT_LENGTH (protocol/request_input.py)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (.ci/run installs it)")
    assert target.stack.https is not None
    profile = target.variant.profile
    url = target.url("/echo/h2")
    if not length and profile.http2_length_required:
        # The server's own 411, before the app is asked; it then resets the stream or
        # closes, and curl may see that first (status 0).
        version, response = http2_post(target.stack.https, url, [BODY[:100]], length=False)
        assert response.status in {0, 411}, response
        return
    body = BODY[:100_000]
    if not length and profile.largest_http2_upload_without_length is not None:
        body = body[: profile.largest_http2_upload_without_length]
    third = len(body) // 3 + 1
    parts = [body[start : start + third] for start in range(0, len(body), third)]
    version, response = http2_post(
        target.stack.https,
        url,
        parts,
        length=length,
        pause=HTTP2_PAUSE_SECONDS,
        from_file=length and profile.ends_http2_body_at_its_length,
    )
    assert version == "2", response
    assert response.status == 200, response
    seen = Seen(json.loads(response.body), target.interface)
    assert (seen.data["body_length"], seen.data["body_sha256"]) == (
        len(body),
        hashlib.sha256(body).hexdigest(),
    )
    if target.interface == "wsgi":  # h2o says HTTP/2, the others HTTP/2.0
        assert seen.data["SERVER_PROTOCOL"] in ("HTTP/2", "HTTP/2.0")
    else:
        assert seen.data["http_version"] == "2"


# -- request headers -------------------------------------------------------------------------


@matrix()
def test_repeated_headers_and_cookies(target: Target) -> None:
    headers = [("X-Dup", "a"), ("X-Dup", "b"), ("Cookie", "a=1"), ("Cookie", "b=2")]
    seen = target.echo("/echo", headers=headers)
    assert seen.header("X-Dup") == "a, b"
    assert seen.header("Cookie") == target.variant.profile.cookie


@matrix()
def test_authorization_reaches_the_app(target: Target) -> None:
    """Apache passes it on only with CGIPassAuth On, which its example configs set."""
    credentials = "Basic YWxpY2U6c2VjcmV0"
    seen = target.echo("/echo", headers=[("Authorization", credentials)])
    assert seen.header("Authorization") == credentials


# -- responses -------------------------------------------------------------------------------


#: Big heads: header lines of so many bytes each (X-Big-0, X-Big-1, ...).
_BIG_HEADS = {"12k-in-3-lines": (3, 4000), "one-8300-byte-line": (1, 8300), "28k": (7, 4000)}
#: Responses, and with two lines more (Status, Content-Type), 100 and 101 lines.
BIG_HEADERS = _BIG_HEADS | {"100-lines": (98, 20), "101-lines": (99, 20)}
#: Requests, up to what Caddy and h2o pass.
BIG_REQUEST_HEADERS = _BIG_HEADS | {"70k": (10, 7000), "152-lines": (150, 20)}


def fits(lines: int, size: int, limits: tuple[int | None, int | None, int | None]) -> bool:
    """``lines`` header lines of ``size`` bytes each, and two more (a response's Status
    and Content-Type, a request's Host and Accept-Encoding), are within the ``limits`` on a
    line, the head, and its lines (None: none)."""
    line_limit, head_limit, lines_limit = limits
    return (
        (line_limit or size) >= size
        and (head_limit or lines * size) >= lines * size
        and (lines_limit or lines + 2) >= lines + 2
    )


@matrix()
@pytest.mark.parametrize("form", BIG_HEADERS)
def test_big_response_headers_reach_the_client(target: Target, form: str) -> None:
    """Cookies, a Content-Security-Policy, links: a response head grows past the 4 KiB that
    stock nginx takes (its 502, "upstream sent too big header", is a FAQ of php-fpm). The
    example configs pass 28 KB behind every server but HAProxy (its buffer), lines over
    8 KiB behind every server but Apache, and over 100 lines behind every server but h2o
    and HAProxy (README note 24); what a server refuses gets its own error page, and the
    next request is served."""
    count, size = BIG_HEADERS[form]
    profile = target.variant.profile
    response = target.fetch("GET", f"/headers?size={size}&count={count}")
    limits = (
        profile.response_header_line_limit,
        profile.response_head_limit,
        profile.response_head_lines_limit,
    )
    if fits(count, size, limits):
        assert response.status == 200, response
        assert [response.header(f"X-Big-{number}") for number in range(count)] == [
            "h" * size
        ] * count
    else:
        assert response.status == profile.response_head_refused_with, response
    assert target.echo("/echo/after").path == "/echo/after"


@matrix()
@pytest.mark.parametrize("form", BIG_REQUEST_HEADERS)
def test_big_request_headers_reach_the_app(target: Target, form: str) -> None:
    """Big cookies (a session in a JWT) and many headers: each server passes a request head
    up to its own limits, and answers a bigger one itself (400, 431, or mod_fcgid's 500);
    fcgigw takes a megabyte of params (max_params_bytes) and is never the one to refuse
    (README note 24)."""
    count, size = BIG_REQUEST_HEADERS[form]
    profile = target.variant.profile
    headers = [(f"X-Big-{number}", "r" * size) for number in range(count)]
    limits = (
        profile.request_header_line_limit,
        profile.request_head_limit,
        profile.request_head_lines_limit,
    )
    if fits(count, size, limits):
        seen = target.echo("/echo", headers=headers)
        assert [seen.header(name) for name, _ in headers] == [value for _, value in headers]
    else:
        response = target.fetch("GET", "/echo", headers)
        assert response.status in {400, 431, 500}, response
    assert target.echo("/echo/after").path == "/echo/after"


@matrix()
def test_head_reaches_the_app_as_head_and_has_no_body(target: Target) -> None:
    response = target.fetch("HEAD", "/method")
    assert (response.status, response.header("X-Request-Method")) == (200, "HEAD")
    assert response.body == b""


@matrix()
def test_redirect_with_explicit_status(target: Target) -> None:
    response = target.fetch("GET", "/redirect")
    location = target.url("/echo/landed")
    assert (response.status, response.header("Location")) == (302, location)
    assert response.body == REDIRECTED
    assert (response.header("Status") is not None) == target.variant.profile.echoes_status
    seen = target.echo("/echo/landed")
    assert (seen.script_name, seen.path) == (target.variant.prefix, "/echo/landed")


@matrix()
def test_streamed_response(target: Target) -> None:
    """The app sends ``first``, then waits until the test creates the release file: a server
    that streams delivers ``first`` before that. One that buffers (lighttpd's default) sends
    nothing, not even the status, until the app has finished: the test releases it first."""
    release = target.stack.shared_dir / f"release-{uuid.uuid4().hex}"
    if not target.variant.streams:
        release.touch()
    with (
        contextlib.closing(target.client()) as client,
        client.streaming(target.url(f"/stream?release={release}")) as response,
    ):
        assert response.status == 200
        assert response.readline() == FIRST
        release.touch()
        assert response.read() == RELEASED


#: How soon the app must learn that the client hung up (it would go on for twenty seconds).
HANG_UP_NOTICED_SECONDS = 10.0


@contextlib.contextmanager
def app_mark(target: Target, name: str) -> Iterator[Path]:
    """A file the app writes when it ends (matrixapps' /endless and /disconnect), in a
    directory of its own that any app user may write in."""
    marks = target.stack.shared_dir / f"marks-{uuid.uuid4().hex}"
    marks.mkdir()
    marks.chmod(0o777)  # mod_fcgid's app runs as www-data
    try:
        yield marks / name
    finally:
        shutil.rmtree(marks, ignore_errors=True)


def wait_for_mark(mark: Path) -> bytes:
    """What the app wrote in ``mark``, once it has, within HANG_UP_NOTICED_SECONDS."""
    deadline = time.monotonic() + HANG_UP_NOTICED_SECONDS
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.05)  # the app's write of the mark, begun, has ended
    assert mark.exists(), f"the app was still running {HANG_UP_NOTICED_SECONDS} s after"
    return mark.read_bytes()


#: How long the app streams behind a server that buffers the response (and never notices).
BUFFERED_ENDLESS_SECONDS = 2.0


@matrix(http=True)
def test_a_client_that_hangs_up_mid_response_stops_the_app(target: Target) -> None:
    """The app streams a line every 10 ms for twenty seconds; the client reads the start
    and hangs up. The web server then closes its FastCGI connection (web-servers.md §2:
    none sends ABORT_REQUEST), and fcgigw stops the app (WSGI: closes its iterable; ASGI:
    ``send`` raises) instead of letting it stream into the void, then serves the next
    request. A server that buffers the whole response (lighttpd's default) does not notice
    the client leave: the app runs to its end, as README note 6 says."""
    streams = target.variant.streams
    assert target.stack.http is not None
    with app_mark(target, "endless") as mark:
        query = f"mark={mark}" if streams else f"mark={mark}&seconds={BUFFERED_ENDLESS_SECONDS}"
        hang_up_mid_response(
            target.stack.http, target.url(f"/endless?{query}"), streams=streams, timeout=TIMEOUT
        )
        assert wait_for_mark(mark) == (STOPPED if streams else FINISHED)
    assert target.echo("/echo/after").path == "/echo/after"


#: How long the long poll waits behind a server that does not tell it the client left.
UNNOTICED_WAIT_SECONDS = 2.0


@matrix(http=True, interfaces=("asgi",))
def test_a_client_that_hangs_up_before_the_response_reaches_a_long_poll(target: Target) -> None:
    """An ASGI long poll waits in ``receive()`` and answers nothing; the client gives up.
    nginx closes the FastCGI connection, and the app gets ``http.disconnect`` at once (then
    the next request is served); the other servers go on waiting for the response
    (web-servers.md §2), so the app learns nothing until it answers."""
    notices = target.variant.profile.notices_early_hang_up
    seconds = HANG_UP_NOTICED_SECONDS * 2 if notices else UNNOTICED_WAIT_SECONDS
    assert target.stack.http is not None
    with app_mark(target, "long-poll") as mark:
        hang_up_mid_response(
            target.stack.http,
            target.url(f"/disconnect?mark={mark}&seconds={seconds}"),
            streams=False,  # nothing comes: it waits, then leaves
            timeout=TIMEOUT,
        )
        assert wait_for_mark(mark) == (DISCONNECTED if notices else TIMED_OUT.strip())
    assert target.echo("/echo/after").path == "/echo/after"


@matrix()
def test_a_client_that_leaves_mid_upload_leaves_no_truncated_body(target: Target) -> None:
    """The client promises a megabyte, sends 300 KB and closes. Behind the servers that pass
    the body on as it comes, the app reads part of it and then (WSGI) an OSError or (ASGI)
    ``http.disconnect``, never the end of the body: an app saving uploads would otherwise
    keep a truncated file as whole, and behind Apache, Caddy and HAProxy a WSGI app did until
    fcgigw raised (§6.2 asks the app to notice). cgi-fcgi ends STDIN early and waits: the
    request is aborted once the body has been silent for --body-stall-timeout-seconds (its
    stack sets CGI_FCGI_STALL_SECONDS; it waited for ever before).
    The servers that read the whole body first never call the app (it would write its mark
    at once). The next request is served."""
    with app_mark(target, "upload") as mark:
        url = target.url(f"/upload?mark={mark}")
        if target.stack.http is None:
            with contextlib.closing(target.client()) as client:
                assert isinstance(client, CgiClient)
                client.cut_upload(url, CUT_UPLOAD_PROMISED, CUT_UPLOAD_SENT)
        else:
            leave_mid_upload(target.stack.http, url)
        check_cut_upload(target, mark)
    assert target.echo("/echo/after").path == "/echo/after"


@matrix(http=True)
def test_a_client_that_leaves_mid_upload_over_http2_leaves_no_truncated_body(
    target: Target,
) -> None:
    """The same over HTTP/2 (curl, killed mid-upload): each server does what it does over
    HTTP/1.1."""
    assert target.stack.https is not None
    with app_mark(target, "upload") as mark:
        leave_mid_upload_http2(target.stack.https, target.url(f"/upload?mark={mark}"))
        check_cut_upload(target, mark)
    assert target.echo("/echo/after").path == "/echo/after"


def check_cut_upload(target: Target, mark: Path) -> None:
    """The app read part of the body and then an error (WSGI) or a disconnect (ASGI), or,
    behind a server that reads the whole body first, was never called."""
    if target.variant.profile.passes_a_cut_upload:
        outcome, _, received = wait_for_mark(mark).partition(b" ")
        assert outcome == (ERROR if target.interface == "wsgi" else DISCONNECTED)
        assert int(received) <= CUT_UPLOAD_SENT
    else:
        assert not mark.exists(), mark.read_bytes()


#: The start of HAProxy's own 500 page, which it answers when it fails a request itself.
HAPROXY_500 = b"<html><body><h1>500 Internal Server Error</h1>"


def after_early_answer(target: Target, response: Response) -> Seen:
    """The request after an early answer (GET /echo?after=early), which must reach the app.
    HAProxy 2.6 now and then answers it with its own 500 without passing it on (termination
    state IH, an internal error; about one pair in 2,000 on a loaded machine): README note
    15. That answer is let through once, and the request made again on a new connection (on
    the same one, CI saw HAProxy fail it a second time)."""
    if target.variant.profile.server == "haproxy" and response.body.startswith(HAPROXY_500):
        response = target.fetch("GET", "/echo?after=early")
    assert response.status == 200, response
    return Seen(json.loads(response.body), target.interface)


# Early answers: these hung behind nginx (which stops sending the body once answered) and
# behind mod_fcgid and Caddy (which send the whole body before reading) until fcgigw ended
# the request when nginx's body went quiet and read while it wrote; behind HAProxy, Apache and
# Caddy, which go on sending the body, they failed now and then on a busy machine (HAProxy's
# own 500 for the next request, a stalled upload) until fcgigw waited for the body's end
# from every server but nginx. test_matrix_peers.py replays each server's way.


@matrix()
def test_early_response_before_the_body_is_read_then_keep_alive(target: Target) -> None:
    """The app answers 413 without reading a 5 MiB body (WSGI: a list of one item); the
    next request on the same client connection (and, where the server keeps them, FastCGI
    connection) works."""
    then = target.url("/echo?after=early")
    with contextlib.closing(target.client()) as client:
        response = client.request("POST", target.url("/early"), body=BODY)
        assert (response.status, response.body) == (413, TOO_LARGE)
        after = client.request("GET", then)
        seen = after_early_answer(target, after)
    assert seen.query == "after=early"


@matrix()
def test_streamed_early_response_then_keep_alive(target: Target) -> None:
    """The same with a body the WSGI app yields (as Flask and Django return theirs)."""
    then = target.url("/echo?after=early")
    with contextlib.closing(target.client()) as client:
        response = client.request("POST", target.url("/early?size=100"), body=BODY)
        assert (response.status, response.body) == (413, b"x" * 100)
        after = client.request("GET", then)
        seen = after_early_answer(target, after)
    assert seen.query == "after=early"


@matrix()
def test_large_early_response_then_the_next_request(target: Target) -> None:
    """4 MiB back for 5 MiB sent, more than socket buffers hold: each side must read while
    it writes. The client reads the answer while it still sends, as browsers do."""
    size = 4 * 1024 * 1024
    url, then = target.url(f"/early?size={size}"), target.url("/echo?after=early")
    if target.stack.http is None:  # cgi-fcgi: the CGI host reads while it writes anyway
        with contextlib.closing(target.client()) as client:
            response = client.request("POST", url, body=BODY)
            after = client.request("GET", then)
    else:
        response, after = post_while_reading(target.stack.http, url, BODY, then, TIMEOUT)
    assert (response.status, response.body) == (413, b"x" * size)
    seen = after_early_answer(target, after)
    assert seen.query == "after=early"


@matrix(http=True)
def test_early_response_while_the_client_pauses_its_upload(target: Target) -> None:
    """The app answers at once; the client's upload pauses halfway for longer than fcgigw
    waits for nginx's body (which stops once answered). The other servers go on sending it,
    and failed when fcgigw ended the request during the pause: Caddy answered 502, Apache
    cut the response short, HAProxy left the next request hanging."""
    assert target.stack.http is not None
    url, then = target.url("/early?size=100"), target.url("/echo?after=early")
    response, after = post_while_reading(
        target.stack.http, url, BODY, then, TIMEOUT, pause=CLIENT_PAUSE_SECONDS
    )
    assert (response.status, response.body) == (413, b"x" * 100)
    seen = after_early_answer(target, after)
    assert seen.query == "after=early"


# -- connections -----------------------------------------------------------------------------


def fastcgi_peers(port: str) -> set[int]:
    """Remote ports of the ESTABLISHED TCP connections to local port ``port`` (the FastCGI
    connections a web server holds open to fcgigw), from /proc/net/tcp."""
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and int(local.rpartition(":")[2], 16) == int(port):
                peers.add(int(remote.rpartition(":")[2], 16))
    return peers


@matrix(http=True)
def test_one_hundred_sequential_keep_alive_requests(target: Target) -> None:
    samples: list[set[int]] = []  # FastCGI connections open after each request
    fcgigw = target.stack.fcgigw
    with contextlib.closing(target.client()) as client:
        for number in range(1, 101):
            seen = target.echo(f"/echo?n={number}", client=client)
            assert seen.query == f"n={number}"
            if target.variant.keeps_app_connections:
                assert fcgigw is not None
                samples.append(fastcgi_peers(fcgigw.address.rpartition(":")[2]))
    if samples:
        # Kept FastCGI connections served them: one stays open after every response, and a
        # handful served all 100 (not one each). Not necessarily one: HAProxy closes idle
        # server connections in its pool every few seconds, and a loaded CI run once spanned
        # that (a new connection took over between requests 1 and 50).
        assert all(samples), samples
        assert len(set().union(*samples)) <= 8, samples


@matrix(interfaces=("wsgi",))
def test_app_errors_reach_the_server_log(target: Target) -> None:
    """wsgi.errors goes out as FCGI_STDERR: every server logs it (Caddy with capture_stderr)."""
    response = target.fetch("GET", "/errors")
    assert (response.status, response.body) == (200, b"logged")
    if target.variant.profile.logs_app_stderr:
        target.stack.wait_for_log("a line for the web server's error log")


@matrix(interfaces=("wsgi",))
def test_diagnostics_page_names_the_server_and_its_readme_section(target: Target) -> None:
    response = target.fetch("GET", "/diagnostics?format=json")
    assert response.status == 200
    report = json.loads(response.body)
    assert report["server"] == target.variant.profile.detected_as
    assert report["docs"] == server_docs(target.variant.profile.detected_as)
    leaks = [w for w in report["warnings"] if "whole environment" in w]
    assert bool(leaks) == target.variant.profile.forwards_environment, report["warnings"]
