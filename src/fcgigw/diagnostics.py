"""The page fcgigw serves when no APP is given: what the web server sent, what fcgigw made of
it, which server it looks like, and warnings for the classic misconfigurations
(web-servers.md §6). ``?format=json`` gives the same as JSON.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .adapters.params import is_mount_point
from .authorizer import AuthRequest

Pairs = Sequence[tuple[bytes, bytes]]

#: Variables only a whole process environment has: cgi-fcgi forwards it all (web-servers §4).
#: Not PATH: Apache sends its own PATH as a param (mod_proxy_fcgi and mod_fcgid alike).
_ENVIRONMENT_LEAKS = ("HOME", "SHELL", "USER", "LOGNAME", "PWD")


#: The README, whose "Web servers" section has a part per server; the page links to it.
README = "README.md"

#: Each server detect_server() can name, and the anchor of its part of the README.
SERVER_SECTIONS = {
    "nginx": "nginx",
    "apache-proxy-fcgi": "apache-mod_proxy_fcgi",
    "apache-fcgid": "apache-mod_fcgid",
    "apache": "web-servers",  # an Authorizer call: mod_authnz_fcgi or mod_fcgid
    "lighttpd": "lighttpd",
    "h2o": "h2o",
    "caddy": "caddy",
    "cgi-fcgi": "cgi-fcgi",
}

#: SERVER_SOFTWARE prefixes, checked after the Apache proxy_fcgi shape (it says Apache too).
_SOFTWARE = (
    (b"nginx", "nginx"),
    (b"lighttpd", "lighttpd"),
    (b"h2o", "h2o"),
    (b"caddy", "caddy"),
    (b"apache", "apache-fcgid"),
)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def detect_server(params: Pairs) -> str | None:
    """Guess the web server from the shape of its params (web-servers.md §1, §4, §5)."""
    values = dict(params)
    if values.get(b"SCRIPT_FILENAME", b"").startswith(b"proxy:fcgi://"):
        return "apache-proxy-fcgi"
    software = values.get(b"SERVER_SOFTWARE", b"").lower()
    for marker, server in _SOFTWARE:
        if software.startswith(marker):
            return server
    return _detect_by_shape(values)


def _detect_by_shape(values: dict[bytes, bytes]) -> str | None:
    if b"FCGI_APACHE_ROLE" in values:
        return "apache"
    if b"PATH" in values and b"HOME" in values:
        return "cgi-fcgi"
    if b"SERVER_ADDR" not in values and values.get(b"DOCUMENT_URI") == b"":
        return "caddy"
    return None


def server_docs(server: str | None) -> str:
    """The README section on setting up ``server``: its part of "Web servers", or the
    whole section when the server is not recognised."""
    return f"{README}#{SERVER_SECTIONS.get(server or '', 'web-servers')}"


def warnings(params: Pairs, environ: dict[str, Any]) -> list[str]:
    """Configuration problems visible in one request, each with what to change."""
    names = [name for name, _ in params]
    values = dict(params)
    found: list[str] = []
    if b"PATH_INFO" not in names and environ.get("SCRIPT_NAME") == "":
        found.append(
            "The server sent the whole path in SCRIPT_NAME and no PATH_INFO (stock nginx "
            "fastcgi_params, Apache ProxyPass). fcgigw treats it all as PATH_INFO, so an app "
            "mounted under a sub-path sees that prefix: start fcgigw with --root-path PREFIX, or "
            "split it in the server (nginx fastcgi_split_path_info, Apache SetEnvIf ... "
            "proxy-fcgi-pathinfo=unescape)."
        )
    if values.get(b"SCRIPT_NAME", b"").count(b"/") > 1 and b"PATH_INFO" in names:
        found.append(
            "SCRIPT_NAME has more than one segment while PATH_INFO is set: lighttpd with a "
            'trailing slash in its prefix ("/app/") moves a path segment into SCRIPT_NAME. Use '
            '"/app" without the slash.'
        )
    if is_mount_point(lambda name: _text(values.get(name.encode()))):
        found.append(
            "The server sent SCRIPT_NAME without PATH_INFO, and its document root holds that "
            "path: fcgigw took this URL for the point where the app is mounted, as HAProxy "
            "(path-info) and lighttpd send it for exactly that URL. If the app is not mounted "
            "there, the server does not split the path: give HAProxy's fcgi-app a path-info "
            "line (path-info ^()(/.*)$ at the root of the site, ^(/app)(/.*)?$ under /app), or "
            "start fcgigw with --root-path PREFIX."
        )
    server = detect_server(params) or ""
    if server.startswith("apache") and b"HTTP_AUTHORIZATION" not in names:
        found.append(
            "No HTTP_AUTHORIZATION arrived. Apache drops it unless told otherwise: add "
            "'CGIPassAuth On' if the app checks credentials itself."
        )
    if any(name.decode("latin-1") in _ENVIRONMENT_LEAKS for name in names):
        found.append(
            "The params include HOME, SHELL or USER: the server forwards its whole "
            "environment (cgi-fcgi does), which may leak secrets to the app and its logs."
        )
    if b"HTTP_PROXY" in names:
        found.append("A Proxy: request header arrived as HTTP_PROXY; fcgigw dropped it (httpoxy).")
    host = values.get(b"HTTP_HOST", b"")
    port = values.get(b"SERVER_PORT", b"")
    if host and b":" not in host and port not in (b"", b"80", b"443"):
        found.append(
            f"HTTP_HOST has no port while SERVER_PORT is {port.decode('latin-1')}: Debian's "
            "nginx fastcgi_params sets HTTP_HOST to $host. Use $http_host if URLs built by the "
            "app lose the port."
        )
    return found


def report(environ: dict[str, Any]) -> dict[str, Any]:
    """Everything the page shows, as plain data."""
    params: Pairs = environ.get("fcgi.params", ())
    server = detect_server(params)
    return {
        "role": environ.get("FCGI_ROLE", "RESPONDER"),
        "server": server,
        "docs": server_docs(server),
        "params": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in params],
        "derived": {
            "SCRIPT_NAME": environ.get("SCRIPT_NAME", ""),
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "wsgi.url_scheme": environ.get("wsgi.url_scheme", ""),
            "host": environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""),
            "CONTENT_LENGTH": environ.get("CONTENT_LENGTH"),
        },
        "warnings": warnings(params, environ),
        **_role_report(environ),
    }


def _role_report(environ: dict[str, Any]) -> dict[str, Any]:
    """What the Authorizer and Filter roles (§6.3, §6.4) bring besides the params."""
    role = environ.get("FCGI_ROLE")
    if role == "AUTHORIZER":
        request = AuthRequest({k: v for k, v in environ.items() if isinstance(v, str)})
        credentials = request.credentials()
        return {
            "authorizer": {
                "decision": "deny (403): no application is configured, fcgigw fails closed",
                "apache_role": request.apache_role,
                "user": credentials[0] if credentials else None,
                "password_received": credentials is not None,
                "would_grant": "an Allow's variables, as Variable-NAME headers: the web "
                "server passes each to the responder as param NAME",
            }
        }
    if role == "FILTER":
        data = environ["fcgi.data"].read()
        return {
            "filter": {
                "FCGI_DATA_LENGTH": environ.get("FCGI_DATA_LENGTH"),
                "FCGI_DATA_LAST_MOD": environ.get("FCGI_DATA_LAST_MOD"),
                "data_bytes_received": len(data),
            }
        }
    return {}


def _rows(pairs: Iterable[tuple[str, Any]]) -> str:
    return "".join(
        f"<tr><th>{html.escape(str(key))}</th><td><code>{html.escape(str(value))}</code></td></tr>"
        for key, value in pairs
    )


def render_html(data: dict[str, Any]) -> str:
    """The report as a small, escaped HTML page."""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in data["warnings"]) or "<li>none</li>"
    server = data["server"] or "not recognised"
    docs = html.escape(data["docs"])
    return (
        "<!doctype html><meta charset=utf-8><title>fcgigw diagnostics</title>"
        "<h1>fcgigw diagnostics</h1>"
        "<p>No application is configured: this page shows what the web server sent. "
        "Start fcgigw with <code>module:app</code> to serve yours.</p>"
        f"<p>Role: <b>{html.escape(data['role'])}</b>. "
        f"Web server: <b>{html.escape(server)}</b>. "
        f'How to set it up: <a href="{docs}">{docs}</a> in fcgigw\'s README.</p>'
        f"<h2>Warnings</h2><ul>{items}</ul>"
        + "".join(
            f"<h2>{role.title()} role</h2><table>{_rows(data[role].items())}</table>"
            for role in ("authorizer", "filter")
            if role in data
        )
        + f"<h2>What fcgigw derived</h2><table>{_rows(data['derived'].items())}</table>"
        f"<h2>Params as received ({len(data['params'])})</h2><table>{_rows(data['params'])}</table>"
    )


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The diagnostics WSGI app."""
    data = report(environ)
    if "format=json" in environ.get("QUERY_STRING", ""):
        body = json.dumps(data, indent=2).encode()
        content_type = "application/json"
    else:
        body = render_html(data).encode()
        content_type = "text/html; charset=utf-8"
    start_response(
        "403 Forbidden" if "authorizer" in data else "200 OK",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    if environ.get("REQUEST_METHOD") == "HEAD":
        return [b""]
    return [body]
